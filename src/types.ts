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

export interface DefinitionSourceContext {
  realmURL: string;
  scope: string;
  /** Aborted when the computation times out or the process shuts down. */
  signal: AbortSignal;
}

/** The user's expensive computation. `null` means no module exists at that URL. */
export interface DefinitionSource {
  load(moduleURL: string, context: DefinitionSourceContext): Promise<LoadedModule | null>;
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
  /** Who asks: handed to the `scopeFor` option, which derives the scope from the realm and the user. */
  user?: string;
}

export const PUBLIC_SCOPE = 'public';
