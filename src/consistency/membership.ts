import { Logger } from '@nestjs/common';
import { filter, type Subscription } from 'rxjs';
import type { DedicatedConnection } from '../connection/dedicated-connection';
import type { PeerStore } from '../persistence/peers';
import { leaseMargin } from '../config/lease';
import { describeError } from '../describe-error';
import { ModuleCacheShutdownError } from '../errors';
import { messages } from '../messages';

export interface MembershipConfig {
  /** This process's origin id: its row in module_cache_peers. */
  id: string;
  applicationName: string;
  leaseMs: number;
  ackChannel: string;
}

export interface Acknowledged {
  /** Of the live peers when the wait began: those that acknowledged, and those whose lease ran out instead. */
  acknowledged: number;
  expired: number;
  waitedMs: number;
}

/** The longest an invalidation waits for acknowledgements without reading the peers again. */
const ACK_RECHECK_MS = 250;

/** Sync markers kept for the next acknowledgement statement; a genuine later one covers the earlier ones anyway. */
const MAX_PENDING_MARKERS = 64;

/**
 * `consistency: 'strong'`: this process's lease in the database (renewed by every heartbeat,
 * before its probe goes out), its acknowledgements of sync markers, and the wait of an
 * invalidation for every live peer's acknowledgement or lease.
 *
 * Invariants (see docs/how-it-works.md, "Guarantees and their limits"):
 *  - a process trusts its memory only until `renewal sent + leaseMs - margin` by its own monotonic
 *    clock, and only once a probe sent after that renewal came back (so every invalidation
 *    committed before the renewal has been applied); the database records the renewal later
 *    than it was sent, so the lease an invalidator sees ends after this process stopped trusting;
 *  - joining (after every (re)connect, with LISTEN active and memory resynced) says "applied up
 *    to the committed sequence": nothing committed before can be missed, nothing after unheard;
 *  - an acknowledgement of sequence S is sent only after S's sync marker arrived, i.e. after every
 *    notification committed before it was applied (NOTIFY delivers in commit order).
 */
export class Membership {
  private readonly logger = new Logger('ModuleCacheMembership');
  private readonly subscription: Subscription;
  private readonly wakers = new Set<() => void>();
  /** Acknowledgement notifications heard so far: a waiter compares it across its read, so none falls between read and wait. */
  private acksHeard = 0;
  private trustedUntil = 0;
  private joined = false;
  private acking: Promise<void> | undefined;
  /** Sync markers heard and not yet acknowledged (bounded: a flood of forged ones cannot grow it). */
  private markers: Array<{ seq: string; token: string }> = [];
  private lastSummary = { peers: 0, lagging: 0 };
  private stopped = false;

  constructor(
    private readonly config: MembershipConfig,
    private readonly peers: PeerStore,
    transport: DedicatedConnection,
  ) {
    this.subscription = transport.notifications$.pipe(filter((n) => n.channel === config.ackChannel)).subscribe(() => {
      this.acksHeard++;
      for (const wake of this.wakers) wake();
    });
    // A new connection has not applied what it missed: join again (after the resync) before trusting memory.
    this.subscription.add(
      transport.resync$.subscribe(() => {
        this.joined = false;
        this.trustedUntil = 0;
      }),
    );
  }

  /** Renews (or, after a (re)connect, takes) the lease; the heartbeat calls it before its probe. */
  async renew(): Promise<void> {
    if (this.stopped) return;
    const sentAt = performance.now();
    const join = !this.joined;
    await this.peers.renewLease({ join });
    this.joined = true;
    this.trustedUntil = sentAt + this.config.leaseMs - leaseMargin(this.config.leaseMs);
    if (join) this.logger.log(`joined as ${this.config.id} (lease ${this.config.leaseMs} ms)`);
    this.lastSummary = await this.peers.peerSummary().catch(() => this.lastSummary);
  }

  /** Whether this process's lease still holds, by its own clock, with the margin. */
  isTrusted(now = performance.now()): boolean {
    return now < this.trustedUntil;
  }

  /**
   * Acknowledges everything up to `seq`, if `token` proves the marker genuine: one statement in
   * flight at a time, carrying every marker heard meanwhile (the database keeps the highest
   * genuine one).
   */
  acknowledge(seq: string, token: string): void {
    this.markers.push({ seq, token });
    if (this.markers.length > MAX_PENDING_MARKERS) this.markers.splice(0, this.markers.length - MAX_PENDING_MARKERS);
    if (!this.acking) this.acking = this.flushAcks().finally(() => (this.acking = undefined));
  }

  /**
   * Resolves once every live peer acknowledged `seq` or its lease ran out (by the database
   * clock): never longer than a lease. Woken by acknowledgements (the peers are read again once
   * as many were heard as peers are waited for), re-checked at the earliest lease end. An
   * acknowledgement heard while the peers were being read counts towards the next read, so none
   * that committed after that read's snapshot is missed.
   * Shutdown (`shutdown` fired, or this process left) ends the wait at once with
   * ModuleCacheShutdownError: an unconfirmed invalidation never resolves as if confirmed.
   */
  async awaitAcknowledgements(seq: string, shutdown?: AbortSignal): Promise<Acknowledged> {
    const started = performance.now();
    const stopping = () => this.stopped || shutdown?.aborted === true;
    let heard = this.acksHeard;
    const first = await this.peers.awaitedPeers(seq);
    let last = first;
    while (last.waiting.length > 0 && !stopping()) {
      // Each waiting peer sends one acknowledgement: read again once that many were heard since
      // the last read (one read for a whole round of acknowledgements, not one each), or at the
      // earliest lease end, or after ACK_RECHECK_MS (a peer that re-joined moved its acked_seq
      // without a notification).
      const readAt = performance.now();
      while (this.acksHeard - heard < last.waiting.length && !stopping()) {
        const left = Math.min(last.expiresInMs, ACK_RECHECK_MS) - (performance.now() - readAt);
        if (left <= 0) break;
        await this.wakeOrAfter(Math.max(1, left), shutdown);
      }
      if (stopping()) break;
      heard = this.acksHeard;
      last = await this.peers.awaitedPeers(seq);
    }
    if (last.waiting.length > 0) {
      throw new ModuleCacheShutdownError(
        messages.shuttingDown(`waiting for ${last.waiting.length} peer(s) to acknowledge invalidation ${seq}`),
      );
    }
    const expired = first.waiting.length ? await this.peers.unacknowledged({ ids: first.waiting, seq }) : 0;
    return { acknowledged: first.live - expired, expired, waitedMs: performance.now() - started };
  }

  summary(): { peers: number; lagging: number; trusted: boolean } {
    return { ...this.lastSummary, trusted: this.isTrusted() };
  }

  /** Leaves at once (clean shutdown): invalidations stop waiting for this process. */
  async leave(): Promise<void> {
    this.stopped = true;
    this.trustedUntil = 0;
    this.subscription.unsubscribe();
    for (const wake of this.wakers) wake();
    await this.acking?.catch(() => undefined);
    await this.peers.leave().catch((error: unknown) => this.logger.warn(`could not leave: ${describeError(error)}`));
  }

  private async flushAcks(): Promise<void> {
    while (this.markers.length > 0 && !this.stopped) {
      const markers = this.markers;
      this.markers = [];
      const seqs = markers.map((m) => m.seq).join(', ');
      try {
        const acked = await this.peers.acknowledge(markers);
        if (acked === undefined)
          this.logger.warn(`ignored sync marker(s) ${seqs}: no token matches an invalidation (forged, or not a member)`);
      } catch (error) {
        // The invalidator then waits for this process's lease: slower, never wrong.
        this.logger.warn(`could not acknowledge invalidation(s) ${seqs}: ${describeError(error)}`);
      }
    }
  }

  private wakeOrAfter(ms: number, shutdown?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(done);
        shutdown?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
      shutdown?.addEventListener('abort', done, { once: true });
    });
  }
}
