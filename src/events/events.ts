import type { ListenerState } from '../connection/dedicated-connection';
import type { PrewarmSummary } from '../types';

/** Why a (re)connect cleared everything instead of replaying the fence log: no log reader, no sequence applied yet, the log pruned past it, the replay failed, or too many payloads arrived meanwhile. */
export type FullResyncReason = 'no-fence-log' | 'no-sequence' | 'pruned' | 'replay-failed' | 'overflow';

export type CacheTier = 'memory' | 'table';

/** How prewarm() fared with one module: computed and stored, cached already, no such module, or an error (not stored). */
export type PrewarmOutcome = 'warmed' | 'cached' | 'not-found' | 'error';

/**
 * Why a computation's result was not stored: the module was invalidated here meanwhile; the
 * database refused it (something it was built from was invalidated since); its watermark is older
 * than the fence log reaches; it was built on a dependency result that could not be stored; or
 * the fence could not be entered within `fenceWaitMs` (served at once, unpersisted, not retried).
 */
export const DISCARD_REASONS = ['invalidated-locally', 'fenced-by-database', 'fence-expired', 'stale-dependency', 'fence-busy'] as const;
export type DiscardReason = (typeof DISCARD_REASONS)[number];

interface Located {
  url: string;
  realm: string;
  scope: string;
}

/** Everything the lookup service reports on `events$`. */
export type ModuleCacheEvent =
  | ({ type: 'hit'; tier: CacheTier; durationMs: number } & Located)
  | ({ type: 'miss'; durationMs: number } & Located)
  | ({ type: 'computed'; durationMs: number; attempt: number; error?: string } & Located)
  | ({ type: 'persisted'; durationMs: number } & Located)
  | ({ type: 'coalesced'; durationMs: number; woken: boolean } & Located)
  | ({ type: 'discarded'; reason: DiscardReason; attempt: number } & Located)
  /** Every attempt was discarded: the callers already waiting got the last result, neither stored nor kept in memory. */
  | ({ type: 'served-unpersisted'; reason: DiscardReason; attempts: number } & Located)
  | {
      type: 'invalidated';
      kind: 'module' | 'realm' | 'global';
      realm?: string;
      urls: string[];
      durationMs: number;
      /** Strong consistency: how many peers acknowledged, how many ran out of lease instead, how long it waited. */
      acknowledgements?: { acknowledged: number; expired: number; waitedMs: number };
    }
  /** `origin` is absent for the realm server's (`boxel`) payloads. */
  | { type: 'remote-invalidated'; kind: 'module' | 'realm' | 'global'; realm?: string; urls: string[]; origin?: string }
  /** prewarm(): one module done (`completed` of `total` in-realm modules), and how. */
  | {
      type: 'prewarm-progress';
      realm: string;
      url: string;
      outcome: PrewarmOutcome;
      /** The entry's error, or why the computation failed (`outcome: 'error'`). */
      error?: string;
      completed: number;
      total: number;
    }
  /** prewarm(): finished; the summary it resolves with. */
  | ({ type: 'prewarm-finished' } & PrewarmSummary)
  | { type: 'listener-state'; state: ListenerState }
  /**
   * After a (re)connect: `targeted` evicted only what the fence-log rows after `from` touched
   * (`rows` of them); `full` cleared everything, for `reason`. `evicted`: memory entries removed.
   */
  | { type: 'resync'; mode: 'targeted'; from: string; to: string; rows: number; evicted: number }
  | { type: 'resync'; mode: 'full'; reason: FullResyncReason; to?: string; evicted: number };

export interface ModuleCacheStats {
  hits: { memory: number; table: number };
  misses: number;
  computes: number;
  persisted: number;
  discards: number;
  retries: number;
  /** Lookups that waited for a peer process's computation instead of computing. */
  coalescedWaits: number;
  /** Claims taken over from a peer that died or let go without a result. */
  takeovers: number;
  /** Lookups computed without cross-process coalescing because claims were unavailable. */
  uncoordinated: number;
  /** Lookups answered with a result none of whose attempts could be stored (churn, or a busy fence). */
  servedUnpersisted: number;
  /** Persists and invalidations that gave up entering the fence within `fenceWaitMs`. */
  fenceBusy: { persists: number; invalidations: number };
  sourceErrors: number;
  invalidations: number;
  notifications: { sent: number; received: number; rejected: number };
  reconnects: number;
  /** Resyncs after a (re)connect: by fence-log replay, and full (the first connect, a pruned log, a failed replay). */
  resyncs: { targeted: number; full: number };
  inFlight: number;
  memoryEntries: number;
  /** Strong consistency: live peers (besides this process), those behind the latest invalidation, and whether this process's lease holds. */
  membership?: { peers: number; lagging: number; trusted: boolean };
  trackedGenerations: number;
}

export function emptyStats(): ModuleCacheStats {
  return {
    hits: { memory: 0, table: 0 },
    misses: 0,
    computes: 0,
    persisted: 0,
    discards: 0,
    retries: 0,
    coalescedWaits: 0,
    takeovers: 0,
    uncoordinated: 0,
    servedUnpersisted: 0,
    fenceBusy: { persists: 0, invalidations: 0 },
    sourceErrors: 0,
    invalidations: 0,
    notifications: { sent: 0, received: 0, rejected: 0 },
    reconnects: 0,
    resyncs: { targeted: 0, full: 0 },
    inFlight: 0,
    memoryEntries: 0,
    trackedGenerations: 0,
  };
}
