import { Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { Client, type ClientConfig } from 'pg';
import type { Observable, Subscription } from 'rxjs';

export interface CoordinatorConfig {
  /** Settings of the dedicated claims connection (the listener's, with its own application_name). */
  connection: ClientConfig;
  applicationName: string;
  computedChannel: string;
  origin: string;
  waitTimeoutMs: number;
  /** How often a waiter re-tries the claim, to take over from a process that died. */
  takeoverCheckMs: number;
}

export interface Wake {
  /** Resolves 'woken' on a wake-up for the key (also one that came before wait()), else 'tick' after `ms`. */
  wait(ms: number): Promise<'woken' | 'tick'>;
  cancel(): void;
}

/** Advisory-lock key space of claims: 64-bit keys, apart from the two-int fence lock. */
const WAKE_PAYLOAD = /^\{"h":"(-?[0-9]{1,20})","o":"[^"]{1,255}"\}$/;

/**
 * Cross-process populate coalescing. A claim is a session-level advisory lock held on one
 * dedicated connection per process, so it dies with the process (or its connection) and a
 * waiter takes over; no pooled connection is held while a module computes or while a caller
 * waits. Finishing (persisted, discarded, failed, or nothing found) NOTIFYs the key's hash on
 * the computed channel; waiters subscribe before they check, so no wake-up is lost.
 */
export class PopulateCoordinator {
  private readonly logger = new Logger('PopulateCoordinator');
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly subscription: Subscription;
  private client: Promise<Client> | undefined;
  private closed = false;
  claimsHeld = 0;

  constructor(
    private readonly config: CoordinatorConfig,
    raw$: Observable<{ channel: string; payload: string }>,
  ) {
    this.subscription = raw$.subscribe(({ channel, payload }) => {
      if (channel !== config.computedChannel) return;
      const match = WAKE_PAYLOAD.exec(payload); // untrusted: a hint to re-read, nothing more
      if (!match) return;
      for (const wake of this.waiters.get(match[1]) ?? []) wake();
    });
  }

  /** A signed 64-bit lock key from the flight key. */
  static keyOf(flightKey: string): string {
    return createHash('sha256').update(flightKey).digest().readBigInt64BE(0).toString();
  }

  /** Registers interest in the key's wake-ups; call before checking the table or the claim. */
  subscribe(key: string): Wake {
    let woken = false;
    let resolveWait: ((why: 'woken' | 'tick') => void) | undefined;
    const wake = () => {
      woken = true;
      resolveWait?.('woken');
    };
    let set = this.waiters.get(key);
    if (!set) this.waiters.set(key, (set = new Set()));
    set.add(wake);
    return {
      wait: (ms) =>
        new Promise((resolve) => {
          if (woken) return resolve('woken');
          const timer = setTimeout(() => resolve('tick'), Math.max(1, ms));
          resolveWait = (why) => {
            clearTimeout(timer);
            resolve(why);
          };
        }).finally(() => {
          woken = false;
          resolveWait = undefined;
        }) as Promise<'woken' | 'tick'>,
      cancel: () => {
        set!.delete(wake);
        if (set!.size === 0 && this.waiters.get(key) === set) this.waiters.delete(key);
      },
    };
  }

  /** True if this process now holds the claim; 'unavailable' if the claims connection is down (compute uncoordinated). */
  async tryClaim(key: string): Promise<boolean | 'unavailable'> {
    try {
      const client = await this.connection();
      const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1::bigint) AS ok`, [key]);
      if (rows[0].ok) this.claimsHeld++;
      return rows[0].ok;
    } catch (error) {
      this.logger.warn(`claims connection unavailable, computing without cross-process coalescing: ${(error as Error).message}`);
      return 'unavailable';
    }
  }

  /** Wakes the key's waiters everywhere and lets go of the claim, in one statement. */
  async release(key: string): Promise<void> {
    this.claimsHeld--;
    const payload = JSON.stringify({ h: key, o: this.config.origin });
    try {
      const client = await this.connection();
      await client.query(`SELECT pg_notify($1, $2), pg_advisory_unlock($3::bigint)`, [this.config.computedChannel, payload, key]);
    } catch (error) {
      // The connection is gone, and with it the claim: waiters take over at their next check.
      this.logger.warn(`could not release claim ${key}: ${(error as Error).message}`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.subscription.unsubscribe();
    const client = await this.client?.catch(() => undefined);
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private connection(): Promise<Client> {
    if (this.closed) return Promise.reject(new Error('coordinator closed'));
    if (!this.client) {
      const client = new Client({ ...this.config.connection, application_name: this.config.applicationName, keepAlive: true });
      const forget = () => {
        if (this.client === attempt) this.client = undefined;
      };
      client.on('error', (error) => {
        this.logger.warn(`claims connection error (its claims are released): ${error.message}`);
        forget();
      });
      client.on('end', forget);
      const attempt: Promise<Client> = client.connect().then(
        () => client,
        (error: unknown) => {
          forget();
          throw error;
        },
      );
      this.client = attempt;
    }
    return this.client;
  }
}
