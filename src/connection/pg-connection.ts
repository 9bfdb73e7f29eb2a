import { Logger } from '@nestjs/common';
import { Client, escapeIdentifier, type ClientConfig, type Notification } from 'pg';
import { BehaviorSubject, Subject, distinctUntilChanged, type Observable } from 'rxjs';
import { describeError } from '../describe-error';
import { DeadlineError } from '../errors';
import { deadline } from '../timeout';
import type { DedicatedConnection, ListenerState, RawNotification } from './dedicated-connection';

export interface PgDedicatedConnectionConfig {
  connection: ClientConfig;
  applicationName: string;
  channels: string[];
  reconnect: { initialDelayMs: number; maxDelayMs: number };
  /** Longest a claim statement may take; its caller then computes without coalescing. */
  queryTimeoutMs: number;
}

const END_GRACE_MS = 1_000;
const KEEPALIVE_INITIAL_DELAY_MS = 5_000;

/**
 * The process's own dedicated connection, a pg Client (never pooled, never in a transaction):
 * connect, LISTEN, error, reconnect with capped jittered backoff forever, close — in one class
 * whose states are explicit (see dedicated-connection.ts). Queries on it (claims) run one at a
 * time, each bounded by a timeout, so a stalled server cannot hang a lookup.
 */
export class PgDedicatedConnection implements DedicatedConnection {
  private readonly logger = new Logger('ModuleCacheDedicatedConnection');
  private readonly state$$ = new BehaviorSubject<ListenerState>('closed');
  private readonly notifications$$ = new Subject<RawNotification>();
  private readonly resync$$ = new Subject<void>();
  readonly state$: Observable<ListenerState> = this.state$$.pipe(distinctUntilChanged());
  readonly notifications$: Observable<RawNotification> = this.notifications$$.asObservable();
  readonly resync$: Observable<void> = this.resync$$.asObservable();
  reconnects = 0;

  private client: Client | undefined;
  private started: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private reconnectLoop: Promise<void> | undefined;
  private wakeFromBackoff: (() => void) | undefined;
  private backoffTimer: NodeJS.Timeout | undefined;
  /** Queries run one after another: pg deprecates overlapping ones on one client. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly config: PgDedicatedConnectionConfig) {}

  get state(): ListenerState {
    return this.state$$.value;
  }

  /** Connects and LISTENs. A failed first connect does not throw: it keeps retrying in the background. */
  start(): Promise<void> {
    this.started ??= (async () => {
      if (this.stopping) return;
      this.setState('connecting');
      try {
        await this.connectAndListen();
      } catch (err) {
        if (this.stopping) return;
        this.logger.error(`initial connection failed, retrying in the background: ${describeError(err)}`);
        this.ensureReconnecting();
        return;
      }
      this.onListening();
    })();
    return this.started;
  }

  /** Prompt even mid-reconnect or mid-backoff; leaves no connection open. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearTimeout(this.backoffTimer);
      this.wakeFromBackoff?.();
      const client = this.client;
      this.client = undefined;
      await Promise.all([client ? endClient(client) : undefined, this.reconnectLoop]);
      this.setState('closed');
      for (const subject of [this.notifications$$, this.resync$$, this.state$$]) subject.complete();
    })();
    return this.stopping;
  }

  reconnect(reason: string): void {
    const client = this.client;
    if (!client || this.stopping || this.state !== 'listening') return;
    this.logger.warn(`reconnecting: ${reason}`);
    this.client = undefined;
    void endClient(client);
    this.ensureReconnecting();
  }

  async tryLock(key: string): Promise<boolean | 'unavailable'> {
    try {
      const [row] = await this.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1::bigint) AS ok`, [key]);
      return row.ok;
    } catch (error) {
      this.logger.debug(`claim ${key} unavailable: ${describeError(error)}`);
      return 'unavailable';
    }
  }

  async unlockAndNotify(key: string, channel: string, payload: string): Promise<void> {
    await this.query(`SELECT pg_notify($1, $2), pg_advisory_unlock($3::bigint)`, [channel, payload, key]);
  }

  /** One statement on the dedicated connection, after the ones before it, within queryTimeoutMs. */
  private query<T>(sql: string, params: unknown[]): Promise<T[]> {
    const run = async (): Promise<T[]> => {
      const client = this.client;
      if (!client || this.state !== 'listening') throw new Error(`the dedicated connection is ${this.state}`);
      const timeout = deadline(this.config.queryTimeoutMs, 'a statement on the dedicated connection');
      try {
        return (await Promise.race([client.query<T & Record<string, unknown>>(sql, params), timeout.expired])).rows;
      } catch (error) {
        // A statement that never answers leaves the session in an unknown state: start a new one.
        if (this.client === client && error instanceof DeadlineError)
          this.reconnect(`a statement took over ${this.config.queryTimeoutMs} ms`);
        throw error;
      } finally {
        timeout.cancel();
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private newClient(): Client {
    return new Client({
      ...this.config.connection,
      application_name: this.config.applicationName,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_INITIAL_DELAY_MS,
    });
  }

  private async connectAndListen(): Promise<void> {
    if (this.stopping) throw new Error('listener stopped');
    const client = this.newClient();
    this.client = client;
    client.on('error', (err) => this.onConnectionLost(client, err));
    client.on('end', () => this.onConnectionLost(client));
    client.on('notification', (n: Notification) => this.notifications$$.next({ channel: n.channel, payload: n.payload ?? '' }));
    try {
      await client.connect();
      // A LISTENing session sends nothing while it waits: a server or database idle_session_timeout
      // (PostgreSQL 14+) would end it over and over, each time a resync. Off for this session only,
      // where the server has the setting.
      await client.query(`SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'`);
      for (const channel of this.config.channels) await client.query(`LISTEN ${escapeIdentifier(channel)}`);
    } catch (err) {
      // Not ours any more means stop() already ended it.
      if (this.client === client) {
        this.client = undefined;
        await endClient(client);
      }
      throw err;
    }
    if (this.client !== client) throw new Error('listener stopped');
  }

  private onListening(): void {
    this.setState('listening');
    this.resync$$.next();
  }

  private onConnectionLost(client: Client, err?: Error): void {
    // Every client reports its loss twice ('error' then 'end'); only the current one matters.
    if (client !== this.client || this.state !== 'listening' || this.stopping) return;
    this.client = undefined;
    this.logger.warn(`connection lost: ${err ? describeError(err) : 'ended'}`);
    void endClient(client);
    this.ensureReconnecting();
  }

  private ensureReconnecting(): void {
    if (this.stopping || this.reconnectLoop) return;
    this.setState('reconnecting');
    this.reconnectLoop = this.reconnectForever()
      .catch((err) => this.logger.error(`reconnect loop failed: ${describeError(err)}`))
      .finally(() => (this.reconnectLoop = undefined));
  }

  private async reconnectForever(): Promise<void> {
    const { initialDelayMs, maxDelayMs } = this.config.reconnect;
    for (let attempt = 0; !this.stopping; attempt++) {
      const delay = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt, 30));
      await this.sleep(delay / 2 + Math.random() * (delay / 2));
      if (this.stopping) return;
      try {
        await this.connectAndListen();
      } catch (err) {
        if (this.stopping) return;
        if (attempt < 3 || attempt % 10 === 0) this.logger.warn(`reconnect attempt ${attempt + 1} failed: ${describeError(err)}`);
        continue;
      }
      this.reconnects++;
      this.onListening();
      return;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeFromBackoff = resolve;
      this.backoffTimer = setTimeout(resolve, ms);
    });
  }

  private setState(state: ListenerState): void {
    if (this.state$$.value === state || (this.stopping && state !== 'closed')) return;
    this.logger.log(`state ${this.state$$.value} -> ${state}`);
    this.state$$.next(state);
  }
}

/** end(), but never hanging: a connection whose server is frozen is destroyed after a grace period. */
async function endClient(client: Client): Promise<void> {
  const grace = deadline(END_GRACE_MS, 'end()');
  try {
    await Promise.race([client.end().catch(() => undefined), grace.expired]);
  } catch {
    // pg has no public "destroy": reach for the socket so shutdown stays prompt.
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  } finally {
    grace.cancel();
  }
}
