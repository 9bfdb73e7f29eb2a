import { Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { filter, type Subscription } from 'rxjs';
import type { DedicatedConnection } from '../connection/dedicated-connection';
import { CoalesceTimeoutError, ModuleCacheShutdownError } from '../errors';
import type { Recorder } from '../events/recorder';
import { messages } from '../messages';
import type { ReadResult, StoredRow } from '../persistence/entries';
import { encodeWakeUp, parseWakeUp } from '../wire/wake-up';
import { describeError } from '../describe-error';

export interface CoalescerConfig {
  computedChannel: string;
  origin: string;
  waitTimeoutMs: number;
  /** How often a waiter re-tries the claim, to take over from a process that died. */
  takeoverCheckMs: number;
}

export type Coalescing =
  /** A peer computed it: its row, read after the wake-up (or after winning a claim too late). */
  | { kind: 'row'; row: StoredRow; watermark: string; woken: boolean }
  /** This process holds the claim; the miss was confirmed under `watermark`. Release it when done. */
  | { kind: 'claimed'; key: string; watermark: string }
  /** Claims are unavailable: compute without coalescing. */
  | { kind: 'alone' };

/**
 * Cross-process coalescing: one computation per key in the cluster. A claim is a session-level advisory lock held by the
 * process's dedicated connection, so it dies with the process (or its connection) and a waiter
 * takes over; no pooled connection is held while a module computes or while a caller waits.
 * Finishing (persisted, discarded, failed, or nothing found) NOTIFYs the key's hash on the
 * computed channel; waiters subscribe before they check, so no wake-up is lost.
 *
 * An advisory lock is re-entrant within its session: a second `pg_try_advisory_lock` of a key
 * this process already holds (or is taking) would "win" beside the first. So the process keeps
 * its own claims (`held`), and a second flight of a held key waits like a peer's waiter, woken
 * when the first lets go. Shutdown releases every waiter at once (E_SHUTTING_DOWN).
 */
export class Coalescer {
  private readonly logger = new Logger('ModuleCacheCoalescer');
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly subscription: Subscription;
  private readonly releasing = new Set<Promise<void>>();
  /** Keys this process holds a claim on, or is asking for one (set before the statement goes out). */
  private readonly held = new Set<string>();
  private unavailableSince: number | undefined;
  private parkedCount = 0;

  constructor(
    private readonly config: CoalescerConfig,
    private readonly transport: DedicatedConnection,
    private readonly recorder: Recorder,
  ) {
    this.subscription = transport.notifications$.pipe(filter((n) => n.channel === config.computedChannel)).subscribe(({ payload }) => {
      // Anything but a wake-up on the channel is ignored (untrusted hints).
      const key = parseWakeUp(payload);
      if (key === undefined) return;
      for (const wake of this.waiters.get(key) ?? []) wake();
    });
  }

  /** Flights of this process parked on a claim right now (waiting for a wake-up or their next claim attempt). */
  get parked(): number {
    return this.parkedCount;
  }

  /** A signed 64-bit lock key from the flight key. */
  static keyOf(flightKey: string): string {
    return createHash('sha256').update(flightKey).digest().readBigInt64BE(0).toString();
  }

  /**
   * Claims `key` across processes, or waits to be woken by the claimant and reads its result
   * with `read`. A claim is released on every path that does not hand it to the caller. Once
   * `shutdown` fires, the wait (and a claim statement in flight) is given up at once:
   * ModuleCacheShutdownError, whatever the claimant is doing.
   */
  async coordinate(key: string, read: () => Promise<ReadResult>, url: string, shutdown: AbortSignal): Promise<Coalescing> {
    const deadline = Date.now() + this.config.waitTimeoutMs;
    for (let round = 0; ; round++) {
      if (shutdown.aborted) throw this.shuttingDown(url);
      const wake = this.subscribe(key, shutdown);
      try {
        // A key this process holds already is not asked for again (the lock would say yes).
        const claim = this.held.has(key) ? false : await this.tryClaim(key, url, shutdown, wake.own);
        if (claim === 'unavailable') return this.alone();
        this.available();
        if (claim) {
          let again: ReadResult;
          try {
            // A peer may have finished between our read and our claim.
            again = await read();
          } catch (error) {
            this.release(key);
            throw error;
          }
          if (again.row) {
            this.release(key);
            return { kind: 'row', row: again.row, watermark: again.watermark, woken: false };
          }
          if (round > 0) this.recorder.record({ type: 'takeover' });
          return { kind: 'claimed', key, watermark: again.watermark };
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          const error = new CoalesceTimeoutError(messages.coalesceTimeout(url, this.config.waitTimeoutMs));
          this.logger.warn(error.message);
          throw error;
        }
        const why = await wake.wait(Math.min(this.config.takeoverCheckMs, remaining));
        if (why === 'shutdown') throw this.shuttingDown(url);
        if (why === 'woken') {
          const again = await read();
          if (again.row) return { kind: 'row', row: again.row, watermark: again.watermark, woken: true };
          // Finished without a row (discarded, failed or not found): claim it ourselves.
        }
      } finally {
        wake.cancel();
      }
    }
  }

  /** Wakes the key's waiters everywhere (this process's directly) and lets go of the claim, in one statement. */
  release(key: string): void {
    this.held.delete(key);
    const payload = encodeWakeUp(key, this.config.origin);
    const done: Promise<void> = this.transport
      .unlockAndNotify(key, this.config.computedChannel, payload)
      // The connection is gone, and with it the claim: waiters take over at their next check.
      .catch((error: unknown) => this.logger.debug(`could not release claim ${key}: ${describeError(error)}`))
      .finally(() => this.releasing.delete(done));
    this.releasing.add(done);
    // Queued after the unlock on the same connection: a woken local waiter's claim follows it.
    this.wakeLocal(key);
  }

  /** Waits for releases in flight (so peers are woken), then stops listening for wake-ups. */
  async close(): Promise<void> {
    await Promise.all(this.releasing);
    this.subscription.unsubscribe();
  }

  /**
   * `pg_try_advisory_lock`, marked as this process's before it goes out (a second flight of the
   * key waits instead of asking too). Shutdown does not wait for the statement: a claim it wins
   * afterwards is let go at once.
   */
  private async tryClaim(key: string, url: string, shutdown: AbortSignal, own: () => void): Promise<boolean | 'unavailable'> {
    this.held.add(key);
    const statement = this.transport.tryLock(key);
    let onAbort!: () => void;
    const aborted = new Promise<'shutdown'>((resolve) => (onAbort = () => resolve('shutdown')));
    shutdown.addEventListener('abort', onAbort, { once: true });
    let claim: boolean | 'unavailable' | 'shutdown';
    try {
      claim = await Promise.race([statement, aborted]);
    } finally {
      shutdown.removeEventListener('abort', onAbort);
    }
    if (claim === 'shutdown') {
      void statement.then((won) => (won === true ? this.release(key) : this.held.delete(key)));
      throw this.shuttingDown(url);
    }
    if (claim !== true) this.held.delete(key);
    // Local waiters of the key deferred to this attempt: without claims, let them go alone too.
    // (Lost to a peer, they wait for the peer's wake-up, as this attempt does; never wake oneself.)
    if (claim === 'unavailable') this.wakeLocal(key, own);
    return claim;
  }

  private wakeLocal(key: string, except?: () => void): void {
    for (const wake of this.waiters.get(key) ?? []) if (wake !== except) wake();
  }

  private shuttingDown(url: string): ModuleCacheShutdownError {
    return new ModuleCacheShutdownError(messages.shuttingDown(`waiting for the claim on ${url}`));
  }

  private alone(): Coalescing {
    this.recorder.record({ type: 'uncoordinated' });
    if (this.unavailableSince === undefined) {
      this.unavailableSince = Date.now();
      this.logger.warn('claims are unavailable (the dedicated connection is down or slow): computing without cross-process coalescing');
    }
    return { kind: 'alone' };
  }

  private available(): void {
    if (this.unavailableSince === undefined) return;
    this.logger.log(`claims available again after ${Date.now() - this.unavailableSince} ms`);
    this.unavailableSince = undefined;
  }

  /** Registers interest in the key's wake-ups; call before checking the table or the claim. A wait ends at once on shutdown. */
  private subscribe(
    key: string,
    shutdown: AbortSignal,
  ): { wait(ms: number): Promise<'woken' | 'tick' | 'shutdown'>; cancel(): void; own: () => void } {
    let woken = false;
    let resolveWait: ((why: 'woken' | 'tick' | 'shutdown') => void) | undefined;
    const wake = () => {
      woken = true;
      resolveWait?.('woken');
    };
    let set = this.waiters.get(key);
    if (!set) this.waiters.set(key, (set = new Set()));
    set.add(wake);
    let onAbort: (() => void) | undefined;
    let parked = false;
    return {
      own: wake,
      wait: (ms) =>
        new Promise<'woken' | 'tick' | 'shutdown'>((resolve) => {
          if (shutdown.aborted) return resolve('shutdown');
          if (woken) return resolve('woken');
          parked = true;
          this.parkedCount++;
          const timer = setTimeout(() => resolve('tick'), Math.max(1, ms));
          resolveWait = (why) => {
            clearTimeout(timer);
            resolve(why);
          };
          onAbort = () => resolveWait?.('shutdown');
          shutdown.addEventListener('abort', onAbort, { once: true });
        }).finally(() => {
          woken = false;
          resolveWait = undefined;
          if (onAbort) shutdown.removeEventListener('abort', onAbort);
          onAbort = undefined;
          if (parked) this.parkedCount--;
          parked = false;
        }),
      cancel: () => {
        set!.delete(wake);
        if (set!.size === 0 && this.waiters.get(key) === set) this.waiters.delete(key);
      },
    };
  }
}
