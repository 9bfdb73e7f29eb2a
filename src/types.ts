/** A module error as stored and served: the module's own, or one attached from a dependency. */
export interface ModuleError {
  message: string;
  status?: number;
  /** The module the error belongs to (absent for errors the source reported without a URL). */
  url?: string;
  /** True when the module itself is fine and the error only reports failing dependencies. */
  fromDependency?: boolean;
  /** Errors of this module's dependencies, transitively, de-duplicated by URL. */
  additionalErrors?: ModuleError[];
}

/** What a DefinitionSource returns for a module that exists. */
export interface LoadedModule {
  definitions: Record<string, unknown>;
  /** Absolute or relative (to the module URL) dependency URLs. */
  deps: string[];
  error?: { message: string; status?: number };
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
  createdAt: Date;
}

export interface LookupOptions {
  /** `public` (the default) or a per-user scope string. */
  scope?: string;
}

export const PUBLIC_SCOPE = 'public';
