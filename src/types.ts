/**
 * A module error document as the source returned it (any JSON fields: `id`, `stack`, `deps`, …
 * are kept), with its dependencies' errors attached as `additionalErrors`; clamped to
 * `maxErrorBytes` (then `truncated: true`, and cut strings end with "…[truncated]").
 */
export interface ModuleError {
  message: string;
  status?: number;
  /** The module an attached error belongs to, when its document did not say (`dependencyErrors: 'compute'`). */
  url?: string;
  /** True when the module itself is fine and the error only reports failing dependencies (`dependencyErrors: 'compute'`). */
  fromDependency?: boolean;
  /** Errors of this module's dependencies, transitively, de-duplicated. */
  additionalErrors?: ModuleError[];
  /** Set when the document was larger than `maxErrorBytes` and was clamped. */
  truncated?: boolean;
  [field: string]: unknown;
}

/** What a DefinitionSource returns for a module that exists. */
export interface LoadedModule {
  definitions: Record<string, unknown>;
  /** Absolute or relative (to the module URL) URLs, or prefix identifiers, of every module the computation read. */
  deps: string[];
  /** The module's own error: any JSON object with a string `message`; kept whole. */
  error?: { message: string; status?: number; [field: string]: unknown };
  /** Anything worth keeping about the computation (timings, logs: any JSON), stored beside the cache's own timings. */
  diagnostics?: unknown;
}

/**
 * Lookup priorities are integers from LOWEST_PRIORITY to HIGHEST_PRIORITY; a lookup that names
 * none runs at DEFAULT_PRIORITY, and prewarm() at LOWEST_PRIORITY, so that a user's request can
 * go before background work. The cache only forwards them: ordering work is the source's business.
 */
export const LOWEST_PRIORITY = 0;
export const DEFAULT_PRIORITY = 5;
export const HIGHEST_PRIORITY = 10;

export interface DefinitionSourceContext {
  realmURL: string;
  scope: string;
  /** Aborted when the computation times out or the process shuts down. */
  signal: AbortSignal;
  /**
   * The highest priority among this process's callers waiting for the computation (an integer,
   * LOWEST_PRIORITY..HIGHEST_PRIORITY). Always set by the cache; it rises when a caller with a
   * higher priority joins, so read it again when it matters (or use `onPriorityChange`).
   */
  priority?: number;
  /** `LookupOptions.user` of the lookup that started the computation, when it named one. */
  user?: string;
  /**
   * Tells `listener` each time `priority` rises (a more urgent caller joined the computation);
   * returns a function that stops it. Listeners are dropped when the call ends. Always set by the
   * cache; a source that cannot re-prioritise queued work simply ignores it.
   */
  onPriorityChange?(listener: (priority: number) => void): () => void;
}

/** What `DefinitionSource.listModules` is told. */
export interface ModuleListingContext {
  realmURL: string;
  /** Aborted when the process shuts down. */
  signal: AbortSignal;
}

/** The user's expensive computation. `null` means no module exists at that URL. */
export interface DefinitionSource {
  load(moduleURL: string, context: DefinitionSourceContext): Promise<LoadedModule | null>;
  /**
   * Optional: the module URLs of a realm, for `prewarm(realmURL)` without a list. URLs outside the
   * realm (or in a realm nested inside it) are skipped, so listing them is harmless.
   */
  listModules?(realmURL: string, context: ModuleListingContext): Promise<string[]>;
}

/** What `prewarm()` resolves with. `requested` = `skipped` + `warmed` + `alreadyCached` + `notFound` + `errors.length`. */
export interface PrewarmSummary {
  realmURL: string;
  /** Distinct module URLs given, or listed by the source. */
  requested: number;
  /** Computed and persisted now (or persisted by a peer meanwhile, and read). */
  warmed: number;
  /** In memory or the table already: not computed. */
  alreadyCached: number;
  /** No module at the URL (nor at any of its extension candidates). */
  notFound: number;
  /** Modules whose entry is an error (computed now and not stored, or cached as one), or whose computation failed. */
  errors: Array<{ url: string; message: string }>;
  /** Outside the realm, or in another realm nested inside it: not warmed. */
  skipped: number;
  durationMs: number;
}

export interface ModuleCacheEntry {
  /** The URL the entry was computed for (an extensionless lookup resolves to a candidate). */
  url: string;
  realmURL: string;
  scope: string;
  definitions: Record<string, unknown>;
  /** Resolved, canonical, alias-normalised dependency URLs. */
  deps: string[];
  error?: ModuleError;
  /** The computation's own timings (`computeMs`, `attempt`, `requested`) and the source's `diagnostics` (as `source`). */
  diagnostics?: Record<string, unknown>;
  createdAt: Date;
}

export interface LookupOptions {
  /** `public` (the default) or a per-user scope string; wins over `scopeFor`. */
  scope?: string;
  /**
   * Who asks: handed to the `scopeFor` option, which derives the scope from the realm and the
   * user, and to the source's `load()` context (the user of the lookup that started the computation).
   */
  user?: string;
  /**
   * How urgent the lookup is, handed to the source's `load()` context: an integer from
   * LOWEST_PRIORITY (0) to HIGHEST_PRIORITY (10), DEFAULT_PRIORITY (5) when absent. Callers sharing
   * one computation in this process raise it to the highest among them.
   */
  priority?: number;
  /**
   * The realm to look the module up in, registered in this process or not (validated as
   * registerRealm() validates its argument): lets a process that serves no such realm compute and
   * persist for it. The URL must lie inside it (ModuleOutsideRealmError otherwise). From then on,
   * invalidations of that realm reach this process as a registered realm's do.
   */
  realmURL?: string;
}

export const PUBLIC_SCOPE = 'public';
