import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Client, escapeIdentifier, type ClientConfig, type Notification } from 'pg';
import { BehaviorSubject, Subject, distinctUntilChanged, type Observable } from 'rxjs';
import { encodeProbe, isProbePayload, parseInvalidation, type InvalidationMessage } from './invalidation-message';

export type ListenerState = 'connecting' | 'listening' | 'reconnecting' | 'closed';

export interface ListenerConfig {
  /** A dedicated connection: never a pooled one, never one that runs transactions. */
  connection: ClientConfig;
  channel: string;
  /** Also LISTENed; their payloads are passed through unparsed on rawNotifications$. */
  extraChannels?: string[];
  applicationName: string;
  reconnect: { initialDelayMs: number; maxDelayMs: number };
  selfProbeTimeoutMs: number;
  signingSecret?: string;
  /** This process's origin id; its own echoes are still emitted (the consumer ignores them). */
  origin: string;
}

export const LISTENER_CONFIG = Symbol('LISTENER_CONFIG');

export interface ListenerProbe {
  ok: boolean | undefined;
  reason?: string;
  at?: Date;
}

const PREVIEW_CHARS = 200;
const REJECT_LOGS_PER_MINUTE = 20;
const END_GRACE_MS = 1_000;

/**
 * Owns the one dedicated LISTEN connection (connect, LISTEN, error, reconnect, close) and
 * turns the channel into Observables. It knows nothing of the lookup: the lookup subscribes.
 * Notifications sent while disconnected are lost, hence resync$ after every (re)connect.
 */
@Injectable()
export class ModuleCacheInvalidationListener implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('ModuleCacheInvalidationListener');
  private readonly state$$ = new BehaviorSubject<ListenerState>('closed');
  private readonly messages$$ = new Subject<InvalidationMessage>();
  private readonly raw$$ = new Subject<{ channel: string; payload: string }>();
  private readonly resync$$ = new Subject<void>();
  readonly notifications$: Observable<InvalidationMessage> = this.messages$$.asObservable();
  readonly rawNotifications$: Observable<{ channel: string; payload: string }> = this.raw$$.asObservable();
  readonly state$: Observable<ListenerState> = this.state$$.pipe(distinctUntilChanged());
  readonly resync$: Observable<void> = this.resync$$.asObservable();

  private readonly channels: string[];
  private client: Client | undefined;
  private started: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private reconnectLoop: Promise<void> | undefined;
  private wakeFromBackoff: (() => void) | undefined;
  private backoffTimer: NodeJS.Timeout | undefined;
  private readonly probeClients = new Set<Client>();
  private readonly pendingProbes = new Map<string, () => void>();
  private probeResult: ListenerProbe = { ok: undefined };
  private counters = { received: 0, rejected: 0, reconnects: 0, lastRejectReason: undefined as string | undefined };
  private rejectLog = { windowStart: 0, logged: 0, suppressed: 0 };

  constructor(@Inject(LISTENER_CONFIG) private readonly config: ListenerConfig) {
    // Validated with the options (names, quoting happens at LISTEN).
    this.channels = [config.channel, ...(config.extraChannels ?? [])];
  }

  get state(): ListenerState {
    return this.state$$.value;
  }

  get probe(): ListenerProbe {
    return { ...this.probeResult };
  }

  stats(): { received: number; rejected: number; reconnects: number; lastRejectReason?: string } {
    const { lastRejectReason, ...rest } = this.counters;
    return lastRejectReason === undefined ? rest : { ...rest, lastRejectReason };
  }

  onModuleInit(): Promise<void> {
    return this.start();
  }

  onApplicationShutdown(): Promise<void> {
    return this.stop();
  }

  /** Connects, LISTENs and self-probes. A failed first connect does not throw: it keeps retrying in the background. */
  start(): Promise<void> {
    this.started ??= (async () => {
      if (this.stopping) return;
      this.setState('connecting');
      try {
        await this.connectAndListen();
      } catch (err) {
        if (this.stopping) return;
        this.logger.error(`initial connection failed, retrying in the background: ${describe(err)}`);
        this.ensureReconnecting();
        return;
      }
      this.onListening();
      await this.selfProbe();
    })();
    return this.started;
  }

  /** Prompt even mid-reconnect or mid-backoff; leaves no connection open. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearTimeout(this.backoffTimer);
      this.wakeFromBackoff?.();
      for (const resolve of this.pendingProbes.values()) resolve();
      const clients = [this.client, ...this.probeClients].filter((c): c is Client => c !== undefined);
      this.client = undefined;
      this.probeClients.clear();
      await Promise.all([...clients.map(endClient), this.reconnectLoop]);
      this.setState('closed');
      for (const subject of [this.messages$$, this.raw$$, this.resync$$, this.state$$]) subject.complete();
    })();
    return this.stopping;
  }

  /** NOTIFYs itself from a separate short-lived connection and waits for the echo. */
  async selfProbe(): Promise<boolean> {
    const record = (ok: boolean, reason?: string): boolean => {
      this.probeResult = { ok, reason, at: new Date() };
      if (!ok) this.logger.warn(`self-probe failed: ${reason}`);
      return ok;
    };
    if (this.stopping || this.state !== 'listening')
      return record(false, `listener is ${this.stopping ? 'stopping' : this.state}, not listening`);
    const payload = encodeProbe(this.config.origin);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.config.selfProbeTimeoutMs)));
    const arrived = new Promise<'arrived' | 'stopped'>((resolve) =>
      this.pendingProbes.set(payload, () => resolve(this.stopping ? 'stopped' : 'arrived')),
    );
    try {
      const outcome = await Promise.race([deadline, this.sendProbe(payload).then((error) => error ?? arrived)]);
      if (outcome === 'arrived') return record(true);
      if (outcome === 'stopped' || this.stopping) return record(false, 'listener stopped during the probe');
      if (outcome !== 'timeout') return record(false, `could not send the probe NOTIFY: ${outcome}`);
      return record(
        false,
        `its own NOTIFY did not arrive within ${this.config.selfProbeTimeoutMs} ms. LISTEN/NOTIFY delivery is not working on this ` +
          'connection (a transaction-pooling proxy such as PgBouncer drops LISTEN registrations): peer invalidations will be missed',
      );
    } finally {
      clearTimeout(timer);
      this.pendingProbes.delete(payload);
    }
  }

  /** Resolves to an error description, or undefined once the NOTIFY was sent. */
  private async sendProbe(payload: string): Promise<string | undefined> {
    const client = this.newClient(`${this.config.applicationName.slice(0, 57)}-probe`);
    this.probeClients.add(client);
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT pg_notify($1, $2)', [this.config.channel, payload]);
      return undefined;
    } catch (err) {
      return describe(err);
    } finally {
      // stop() empties the set when it ends the probe clients itself.
      if (this.probeClients.delete(client)) await endClient(client);
    }
  }

  private newClient(applicationName: string): Client {
    return new Client({
      ...this.config.connection,
      application_name: applicationName,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
  }

  private async connectAndListen(): Promise<void> {
    if (this.stopping) throw new Error('listener stopped');
    const client = this.newClient(this.config.applicationName);
    this.client = client;
    client.on('error', (err) => this.onConnectionLost(client, err));
    client.on('end', () => this.onConnectionLost(client));
    client.on('notification', (n) => this.onNotification(n));
    try {
      await client.connect();
      for (const channel of this.channels) await client.query(`LISTEN ${escapeIdentifier(channel)}`);
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
    this.logger.warn(`connection lost: ${err ? describe(err) : 'ended'}`);
    void endClient(client);
    this.ensureReconnecting();
  }

  private ensureReconnecting(): void {
    if (this.stopping || this.reconnectLoop) return;
    this.setState('reconnecting');
    this.reconnectLoop = this.reconnectForever()
      .catch((err) => this.logger.error(`reconnect loop failed: ${describe(err)}`))
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
        if (attempt < 3 || attempt % 10 === 0) this.logger.warn(`reconnect attempt ${attempt + 1} failed: ${describe(err)}`);
        continue;
      }
      this.counters.reconnects++;
      this.onListening();
      if (this.probeResult.ok !== true) void this.selfProbe();
      return;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeFromBackoff = resolve;
      this.backoffTimer = setTimeout(resolve, ms);
    });
  }

  private onNotification({ channel, payload = '' }: Notification): void {
    try {
      if (channel !== this.config.channel) {
        if (this.channels.includes(channel)) this.raw$$.next({ channel, payload });
        return;
      }
      if (isProbePayload(payload)) {
        this.pendingProbes.get(payload)?.();
        return;
      }
      const result = parseInvalidation(payload, { signingSecret: this.config.signingSecret });
      if (result.ok) {
        this.counters.received++;
        this.messages$$.next(result.message);
      } else {
        this.counters.rejected++;
        this.counters.lastRejectReason = result.reason;
        this.logReject(result.reason, payload);
      }
    } catch (err) {
      // Subjects report subscriber errors themselves; this only guards our own bookkeeping.
      this.logger.error(`notification handling failed: ${describe(err)}`);
    }
  }

  private logReject(reason: string, payload: string): void {
    const now = Date.now();
    if (now - this.rejectLog.windowStart > 60_000) {
      if (this.rejectLog.suppressed > 0) this.logger.warn(`${this.rejectLog.suppressed} more rejected payloads were not logged`);
      this.rejectLog = { windowStart: now, logged: 0, suppressed: 0 };
    }
    if (this.rejectLog.logged++ >= REJECT_LOGS_PER_MINUTE) {
      this.rejectLog.suppressed++;
      return;
    }
    const preview = payload.length > PREVIEW_CHARS ? `${payload.slice(0, PREVIEW_CHARS)}…` : payload;
    this.logger.warn(`rejected payload on "${this.config.channel}" (${reason}): ${JSON.stringify(preview)}`);
  }

  private setState(state: ListenerState): void {
    if (this.state$$.value === state || (this.stopping && state !== 'closed')) return;
    this.logger.log(`state ${this.state$$.value} -> ${state}`);
    this.state$$.next(state);
  }
}

/** end(), but never hanging: a connection stuck mid-handshake is destroyed after a grace period. */
async function endClient(client: Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), END_GRACE_MS)));
  const outcome = await Promise.race([client.end().catch(() => undefined), timedOut]);
  clearTimeout(timer);
  // pg has no public "destroy": reach for the socket so shutdown stays prompt.
  if (outcome === 'timeout') (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
