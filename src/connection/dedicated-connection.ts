import type { Observable } from 'rxjs';

/**
 * The dedicated connection: the one non-pooled connection of a process (never one that runs
 * transactions), or, in cluster relay mode, its stand-in borrowed from the primary over IPC.
 * Its states:
 *
 *   closed ─start()─▶ connecting ─LISTEN active─▶ listening     (a failed first connect: ─▶ reconnecting)
 *   listening ─lost, or reconnect()─▶ reconnecting ─connected (capped backoff, forever)─▶ listening
 *   any ─stop()─▶ closed            (final: the observables complete)
 *
 * `listening` is the only state in which notifications arrive and claims can be taken; every
 * entry into it is followed by `resync$`, because whatever was sent before may have been missed.
 */
export type ListenerState = 'connecting' | 'listening' | 'reconnecting' | 'closed';

/** One NOTIFY as it arrived. */
export interface RawNotification {
  channel: string;
  payload: string;
}

/**
 * What the listener, coalescing and strong mode's membership need from the dedicated connection:
 * its notifications, its state, a signal after every (re)connect, and session-level advisory
 * locks (claims) that die with it. Implemented by PgDedicatedConnection (a process's own) and
 * RelayedConnection (a node:cluster worker's, through the primary's relay).
 */
export interface DedicatedConnection {
  readonly state: ListenerState;
  readonly state$: Observable<ListenerState>;
  /** Every notification on the connection's channels. */
  readonly notifications$: Observable<RawNotification>;
  /** After every (re)connect, once LISTEN is active: whatever was sent before may have been missed. */
  readonly resync$: Observable<void>;
  readonly reconnects: number;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Drops the connection and connects again (a heartbeat found it deaf). */
  reconnect(reason: string): void;
  /** `pg_try_advisory_lock(key)` held by this connection's session; 'unavailable' when it is down or slow. */
  tryLock(key: string): Promise<boolean | 'unavailable'>;
  /** NOTIFYs `payload` on `channel` and releases the lock, in one statement. */
  unlockAndNotify(key: string, channel: string, payload: string): Promise<void>;
}
