/** Default LISTEN/NOTIFY channel of invalidation messages. */
export const MODULE_CACHE_INVALIDATED_CHANNEL = 'module_cache_invalidated';
/** Default channel on which a finished computation wakes processes waiting for it. */
export const MODULE_CACHE_COMPUTED_CHANNEL = 'module_cache_computed';
/** Default channel on which peers acknowledge invalidations (`consistency: 'strong'`). */
export const MODULE_CACHE_ACKED_CHANNEL = 'module_cache_acked';
/** Internal: this process's membership (`consistency: 'strong'`; null otherwise). */
export const MODULE_CACHE_MEMBERSHIP = Symbol('MODULE_CACHE_MEMBERSHIP');
/** Injection token of the user's DefinitionSource. */
export const DEFINITION_SOURCE = Symbol('DEFINITION_SOURCE');
/** Injection token of the validated, defaulted options. */
export const RESOLVED_MODULE_CACHE_OPTIONS = Symbol('RESOLVED_MODULE_CACHE_OPTIONS');
/** Default executable extensions, in candidate order. */
export const DEFAULT_EXTENSIONS = ['.gts', '.ts', '.gjs', '.js'] as const;
/** Injection token of this process's origin id (ignored in its own NOTIFY echoes). */
export const MODULE_CACHE_ORIGIN = Symbol('MODULE_CACHE_ORIGIN');
/** Internal: the one statement runner of the stores. */
export const MODULE_CACHE_SQL = Symbol('MODULE_CACHE_SQL');
/** Internal: the entry store (reads, fenced persists). */
export const MODULE_CACHE_ENTRIES = Symbol('MODULE_CACHE_ENTRIES');
/** Internal: the invalidation store (delete + fence log + NOTIFY; probes and sync markers). */
export const MODULE_CACHE_INVALIDATIONS = Symbol('MODULE_CACHE_INVALIDATIONS');
/** Internal: the DefinitionSource in use (options.source or the user's DEFINITION_SOURCE provider). */
export const RESOLVED_DEFINITION_SOURCE = Symbol('RESOLVED_DEFINITION_SOURCE');
/** Internal: the TypeORM DataSource the cache uses (the default one, or `dataSourceName`). */
export const MODULE_CACHE_DATA_SOURCE = Symbol('MODULE_CACHE_DATA_SOURCE');
/** Internal: the cross-process coalescer (null when coalescing is off). */
export const MODULE_CACHE_COALESCER = Symbol('MODULE_CACHE_COALESCER');
/** Internal: the recorder every component reports its events and counts to. */
export const MODULE_CACHE_RECORDER = Symbol('MODULE_CACHE_RECORDER');
/** Internal: this process's dedicated connection (or its relayed stand-in); null with `listener: false`. */
export const MODULE_CACHE_DEDICATED_CONNECTION = Symbol('MODULE_CACHE_DEDICATED_CONNECTION');
