import {
  DEFAULT_EXTENSIONS,
  MODULE_CACHE_ACKED_CHANNEL,
  MODULE_CACHE_COMPUTED_CHANNEL,
  MODULE_CACHE_INVALIDATED_CHANNEL,
} from '../module-cache.constants';

/** Freezes every level, so that no caller can change a default for everyone by mutating what it was given. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/**
 * Every option default, once (as node-postgres keeps them in `lib/defaults.js`). The option schema
 * (`config/options.ts`, `config/listener.ts`) and the cluster relay take their defaults from here,
 * and a test checks that docs/options.md says the same. Frozen: schemas hand out copies.
 */
export const DEFAULTS = deepFreeze({
  /** No realm until registered: a lookup outside every realm fails with UnknownRealmError. */
  realms: [] as readonly string[],
  prefixes: {} as Readonly<Record<string, string>>,
  /** The reference server's way: dependency errors only from cached entries, never computing a dependency. */
  dependencyErrors: 'cached',
  /** Large enough for any real error with its stack; bounded so one bad module cannot bloat a row. */
  maxErrorBytes: 64 * 1024,
  wireFormat: 'module-cache',
  consistency: 'eventual',
  /** Strong mode: comfortably above the strong heartbeat's 2 s + 2 s plus the lease margin. */
  leaseMs: 10_000,
  /** Planned once per connection; turned off only behind proxies that lose them (PgBouncer < 1.21). */
  preparedStatements: true,
  channel: MODULE_CACHE_INVALIDATED_CHANNEL,
  computedChannel: MODULE_CACHE_COMPUTED_CHANNEL,
  ackChannel: MODULE_CACHE_ACKED_CHANNEL,
  extensions: [...DEFAULT_EXTENSIONS] as readonly string[],
  /** A failing module is recomputed at most this often per key, so a fix shows up soon without a storm. */
  errorTtlMs: 30_000,
  memory: { maxEntries: 10_000 },
  listener: {
    applicationName: 'module-cache-listener',
    /** Fast first retry (a blip), capped so a long outage costs one attempt per 10 s. */
    reconnect: { initialDelayMs: 100, maxDelayMs: 10_000 },
    /** A deaf listener is found out within 10 s: the longest memory is trusted without proof. */
    heartbeat: { intervalMs: 5_000, timeoutMs: 5_000 },
    queryTimeoutMs: 5_000,
    relay: false,
  },
  /** `consistency: 'strong'` renews leases through the heartbeat: unless told otherwise it beats this fast (under a 10 s lease). */
  strongHeartbeat: { intervalMs: 2_000, timeoutMs: 2_000 },
  coalesceAcrossProcesses: true,
  /** Longer than any sane computation: a waiter gives up only on a peer that is stuck. */
  coalesceWaitTimeoutMs: 120_000,
  coalesceTakeoverCheckMs: 1_000,
  sourceTimeoutMs: 60_000,
  maxRetries: 3,
  /** Must exceed sourceTimeoutMs × (maxRetries + 1) = 4 min: 15 min leaves room for slow computations. */
  fenceRetentionMs: 15 * 60_000,
  /** A persist or an invalidation that cannot enter the fence this fast gives up (served unpersisted / E_FENCE_BUSY). */
  fenceWaitMs: 2_000,
  metrics: false,
  /** prewarm(): modules computed at once; few, so that warm-up leaves the source to the lookups. */
  prewarm: { concurrency: 4 },
  /** `ModuleCacheClusterRelay` (its channels, reconnect and queryTimeoutMs are the ones above). */
  clusterRelay: {
    /** Not the listener's name, so that pg_stat_activity tells the relay's connection apart. */
    applicationName: 'module-cache-relay',
  },
} as const);
