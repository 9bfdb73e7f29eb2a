import { Subject, type Observable } from 'rxjs';
import { emptyStats, type CacheTier, type ModuleCacheEvent, type ModuleCacheStats } from './events';

/**
 * What is counted but not published on `events$`: a source call that failed, a claim taken over
 * from a peer, a lookup computed without coalescing, an invalidation committed (and the payloads it sent).
 */
export type InternalRecord =
  | { type: 'source-error' }
  | { type: 'takeover' }
  | { type: 'uncoordinated' }
  | { type: 'notified'; payloads: number }
  /** A persist or an invalidation gave up entering the fence within fenceWaitMs. */
  | { type: 'fence-busy'; what: 'persist' | 'invalidation' };

/** How long after the last busy fence health still says degraded. */
const FENCE_BUSY_WINDOW_MS = 10_000;

type Located = { url: string; realm: string; scope: string };

/**
 * One record, one count: every event and internal record goes through `record()`, which bumps the
 * counter its type stands for and publishes it when someone listens. `stats()` reads these
 * counters, so no component keeps counts of its own beside the events it reports.
 */
export class Recorder {
  private readonly subject = new Subject<ModuleCacheEvent>();
  /** Hits, misses, computations, persists, discards, coalescing, invalidations, listener changes. */
  readonly events$: Observable<ModuleCacheEvent> = this.subject.asObservable();
  private readonly counts: ModuleCacheStats = emptyStats();
  private lastFenceBusyAt: number | undefined;

  /** Whether anyone listens: the hot path builds no event object for nobody. */
  get observed(): boolean {
    return this.subject.observed;
  }

  record(record: ModuleCacheEvent | InternalRecord): void {
    this.count(record);
    if (isEvent(record) && this.subject.observed) this.subject.next(record);
  }

  /** A hit, built only when someone listens (the memory hit is the hot path). */
  hit(tier: CacheTier, where: Located, started: number | undefined): void {
    this.counts.hits[tier]++;
    if (!this.subject.observed) return;
    const durationMs = started === undefined ? 0 : performance.now() - started;
    this.subject.next({ type: 'hit', tier, ...where, durationMs });
  }

  /** The counters so far (a copy); the live gauges (in flight, memory entries, …) are the caller's to add. */
  counters(): ModuleCacheStats {
    const counts = structuredClone(this.counts);
    // Every discard is retried unless it was the last attempt, which is served unpersisted.
    counts.retries = counts.discards - counts.servedUnpersisted;
    return counts;
  }

  /** True when a persist or an invalidation gave up entering the fence in the last 10 s. */
  get fenceBusyLately(): boolean {
    return this.lastFenceBusyAt !== undefined && performance.now() - this.lastFenceBusyAt < FENCE_BUSY_WINDOW_MS;
  }

  complete(): void {
    this.subject.complete();
  }

  private count(record: ModuleCacheEvent | InternalRecord): void {
    const c = this.counts;
    switch (record.type) {
      case 'hit':
        c.hits[record.tier]++;
        return;
      case 'miss':
        c.misses++;
        return;
      case 'computed':
        c.computes++;
        return;
      case 'persisted':
        c.persisted++;
        return;
      case 'discarded':
        c.discards++;
        return;
      case 'served-unpersisted':
        c.servedUnpersisted++;
        return;
      case 'coalesced':
        c.coalescedWaits++;
        return;
      case 'remote-invalidated':
        c.notifications.received++;
        return;
      case 'source-error':
        c.sourceErrors++;
        return;
      case 'takeover':
        c.takeovers++;
        return;
      case 'uncoordinated':
        c.uncoordinated++;
        return;
      case 'notified':
        // Once per committed invalidation, before strong mode's wait (which may fail after the commit).
        c.invalidations++;
        c.notifications.sent += record.payloads;
        return;
      case 'fence-busy':
        if (record.what === 'persist') c.fenceBusy.persists++;
        else c.fenceBusy.invalidations++;
        this.lastFenceBusyAt = performance.now();
        return;
      case 'resync':
        c.resyncs[record.mode]++;
        return;
      case 'invalidated':
      case 'prewarm-progress':
      case 'prewarm-finished':
      case 'listener-state':
        return;
    }
  }
}

function isEvent(record: ModuleCacheEvent | InternalRecord): record is ModuleCacheEvent {
  return !INTERNAL.has(record.type);
}

const INTERNAL = new Set<string>(['source-error', 'takeover', 'uncoordinated', 'notified', 'fence-busy']);
