/*
 * Why src/listener/ and not broadcast/, connection/ or wire/: the listener is one concept of its
 * own in the vocabulary ("parses the dedicated connection's notifications and runs the
 * heartbeat"). It sits on top of both connection/ (where notifications come from) and wire/ (how
 * they are read), and below lookup/, which subscribes to it; inside either folder it would make
 * that folder depend on the other. broadcast/ named the old mix of all three and now holds only
 * shims, so that it can go.
 */
import { Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Subject, filter, type Observable, type Subscription } from 'rxjs';
import { UrlResolver, canonicalURL, isPrefixIdentifier, isPrefixedURL, parseRealmURL } from '../config/urls';
import type { DedicatedConnection, ListenerState } from '../connection/dedicated-connection';
import { describeError } from '../describe-error';
import { DeadlineError, LeaseRenewalError } from '../errors';
import { messages } from '../messages';
import type { FenceLogRange, FenceLogRow } from '../persistence/invalidations';
import type { FullResyncReason } from '../events/events';
import { deadline } from '../timeout';
import { parseInvalidation, type InvalidationMessage } from '../wire/invalidation';
import { encodeProbe, isProbePayload } from '../wire/probe';
import { isSyncPayload, parseSync, type SyncMarker } from '../wire/sync-marker';

export type { ListenerState } from '../connection/dedicated-connection';
export type { SyncMarker } from '../wire/sync-marker';
export type { FenceLogRow } from '../persistence/invalidations';

/**
 * Reads the fence log after a sequence (none: no rows) and NOTIFYs `marker` on the channel under
 * the fence lock, so that the marker arrives after the notification of every invalidation in the
 * rows and before that of any later one (InvalidationStore.replaySince).
 */
export type FenceLogReader = (after: string | undefined, marker: string) => Promise<FenceLogRange>;

/**
 * What a (re)connect asks of local state, once LISTEN is active: evict what the fence-log rows
 * after `from` touched (`targeted`), or everything (`full`). `to` is the committed sequence the
 * process has applied once this is done.
 */
export type Resync =
  { mode: 'targeted'; from: string; to: string; rows: FenceLogRow[] } | { mode: 'full'; reason: FullResyncReason; to?: string };

export interface ListenerConfig {
  channel: string;
  /**
   * Where this process's probes (and sync markers) go, and where it hears peers' too: `channel`
   * itself (the default), or its control channel in `wireFormat: 'boxel'`, which carries probes and
   * sync markers only. Both must be among the connection's channels.
   */
  controlChannel?: string;
  signingSecret?: string;
  /** This process's origin id; its own echoes are still emitted (the consumer ignores them). */
  origin: string;
  /** A probe NOTIFY goes out through the DataSource pool every `intervalMs` and must arrive within `timeoutMs`. */
  heartbeat: { intervalMs: number; timeoutMs: number };
  /** Runs before each probe is sent (strong consistency renews its lease there); a failure fails the probe. */
  beforeProbe?: () => Promise<void>;
  /** The `prefixes` option: a payload's prefix-form realm and URLs are resolved through it before they are emitted. */
  prefixes?: Readonly<Record<string, string>>;
  /**
   * Reconnects replay the fence log from the last applied sequence instead of clearing memory.
   * `timeoutMs` bounds the whole replay (the fence lock wait included); without `read`, every
   * (re)connect is a full resync.
   */
  replay?: { read: FenceLogReader; timeoutMs: number };
}

/**
 * Sends one NOTIFY through the path peers use (the DataSource's pool); may return the committed
 * sequence read in the same snapshot (then a probe that arrives proves everything up to it applied).
 */
export type ProbeSender = (channel: string, payload: string) => Promise<string | void>;

export interface ListenerProbe {
  ok: boolean | undefined;
  reason?: string;
  at?: Date;
}

const PREVIEW_CHARS = 200;
/** Payloads held while a replay runs, at most: past this the replay becomes a full resync (a flood cannot grow memory). */
const MAX_HELD = 10_000;
const REJECT_LOGS_PER_MINUTE = 20;
/** Distinct unmapped prefixes warned about (each once); past this many, all go to debug (payloads are untrusted). */
const UNMAPPED_PREFIXES_WARNED = 32;

type Resolved = { message: InvalidationMessage } | { unmapped: string };

/**
 * The invalidation channel, parsed: turns the dedicated connection's notifications into
 * validated messages, and proves with a heartbeat that they still arrive. Every
 * `heartbeat.intervalMs` a probe is NOTIFYed through the DataSource pool — the path peers' own
 * invalidations take — and must come back on the listener within `heartbeat.timeoutMs`. Until
 * one has, and as soon as one is overdue, the memory tier is not trusted; a probe that does not
 * arrive also makes the connection reconnect (and so resync). It knows nothing of the lookup:
 * the lookup subscribes. A plain class: the module's providers build it (module-cache.providers.ts).
 */
export class ModuleCacheInvalidationListener implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('ModuleCacheInvalidationListener');
  private readonly messages$$ = new Subject<InvalidationMessage>();
  readonly notifications$: Observable<InvalidationMessage> = this.messages$$.asObservable();
  private readonly syncs$$ = new Subject<SyncMarker>();
  /** Strong consistency's markers (own echoes included), in delivery order with the messages. */
  readonly syncs$: Observable<SyncMarker> = this.syncs$$.asObservable();
  readonly state$: Observable<ListenerState>;
  private readonly resync$$ = new Subject<Resync>();
  /**
   * After every (re)connect, once LISTEN is active and the fence log was read: what to forget,
   * because notifications sent while not listening are lost. Emitted before any message that
   * arrived on the new connection meanwhile.
   */
  readonly resync$: Observable<Resync> = this.resync$$.asObservable();

  private readonly subscription: Subscription;
  private readonly pendingProbes = new Map<string, () => void>();
  private probeResult: ListenerProbe = { ok: undefined };
  /** performance.now() until which the memory tier may be trusted. */
  private trustedUntil = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** The probe started when the connection last (re)connected. */
  private connectProbe: Promise<boolean> | undefined;
  private stopped = false;
  private counters = { received: 0, rejected: 0, covered: 0, lastRejectReason: undefined as string | undefined };
  /** Every invalidation up to this sequence has been applied locally (undefined: none known yet). */
  private appliedSeq: string | undefined;
  /** Bumped by every (re)connect: a probe or replay of an older connection changes nothing. */
  private epoch = 0;
  private replaying: Promise<void> | undefined;
  /** Payloads that arrived while the replay ran, in order, and whether its marker had arrived before each. */
  private held: Array<{ payload: string; channel: string; afterMarker: boolean }> | undefined;
  private heldOverflow = false;
  private marker: { payload: string; seen: boolean } | undefined;
  private rejectLog = { windowStart: 0, logged: 0, suppressed: 0 };
  private readonly resolver: UrlResolver;
  private readonly controlChannel: string;
  private readonly unmappedWarned = new Set<string>();

  constructor(
    private readonly config: ListenerConfig,
    private readonly connection: DedicatedConnection,
    private readonly sendProbe: ProbeSender,
  ) {
    this.resolver = new UrlResolver([], config.prefixes ?? {});
    this.state$ = connection.state$;
    this.controlChannel = config.controlChannel ?? config.channel;
    // One subscription for both channels: Postgres delivers them from one queue in commit order,
    // and a sync marker must be handled after the invalidations committed before it.
    this.subscription = connection.notifications$
      .pipe(filter((n) => n.channel === config.channel || n.channel === this.controlChannel))
      .subscribe((n) => this.onPayload(n.payload, n.channel));
    // Notifications sent while there is no connection are lost: memory stops being trusted the
    // moment it goes (not only once the next heartbeat is overdue), until a new one proves itself.
    this.subscription.add(connection.state$.pipe(filter((state) => state !== 'listening')).subscribe(() => (this.trustedUntil = 0)));
    // A new connection has missed what was sent before it: catch up, then probe it at once.
    this.subscription.add(connection.resync$.subscribe(() => this.onConnected()));
  }

  get state(): ListenerState {
    return this.connection.state;
  }

  get probe(): ListenerProbe {
    return { ...this.probeResult };
  }

  /** Whether a heartbeat has proven, recently enough, that invalidations reach this process. */
  isTrusted(now = performance.now()): boolean {
    return now < this.trustedUntil;
  }

  /**
   * `covered`: invalidations that arrived on a new connection before its replay's marker, applied
   * through the replay's rows instead (once). `appliedSeq`: every invalidation up to it is applied.
   */
  stats(): { received: number; rejected: number; covered: number; reconnects: number; appliedSeq?: string; lastRejectReason?: string } {
    const { lastRejectReason, ...rest } = this.counters;
    const base = {
      ...rest,
      reconnects: this.connection.reconnects,
      ...(this.appliedSeq === undefined ? {} : { appliedSeq: this.appliedSeq }),
    };
    return lastRejectReason === undefined ? base : { ...base, lastRejectReason };
  }

  /** LISTEN is active before the application is ready; the first probe runs before it, too. */
  async onModuleInit(): Promise<void> {
    await this.connection.start();
    // A first connect that failed keeps retrying in the background; it probes when it succeeds.
    if (this.connectProbe) await this.connectProbe;
    else this.recordProbe(false, `listener is ${this.state}`);
    this.scheduleHeartbeat();
  }

  onApplicationShutdown(): Promise<void> {
    return this.stop();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.heartbeatTimer);
    for (const resolve of this.pendingProbes.values()) resolve();
    this.subscription.unsubscribe();
    await this.connection.stop();
    this.messages$$.complete();
    this.syncs$$.complete();
    this.resync$$.complete();
  }

  /** NOTIFYs a probe through the DataSource pool and waits for it on the listener. */
  async selfProbe(): Promise<boolean> {
    // Memory is trusted, and a lease joined, only once the replay applied what the connection missed.
    if (this.replaying) await this.replaying;
    if (this.stopped || this.state !== 'listening') return this.recordProbe(false, `listener is ${this.stopped ? 'stopped' : this.state}`);
    const epoch = this.epoch;
    const payload = encodeProbe(this.config.origin);
    const sentAt = performance.now();
    const { timeoutMs, intervalMs } = this.config.heartbeat;
    const timeout = deadline(timeoutMs, 'the heartbeat probe');
    const arrived = new Promise<void>((resolve) => this.pendingProbes.set(payload, resolve));
    try {
      if (this.config.beforeProbe) {
        await Promise.race([
          this.config
            .beforeProbe()
            .catch((error: unknown) =>
              Promise.reject(new LeaseRenewalError(messages.leaseRenewalFailed(describeError(error)), { cause: error })),
            ),
          timeout.expired,
        ]);
      }
      const seq = await Promise.race([this.sendProbe(this.controlChannel, payload), timeout.expired]);
      await Promise.race([arrived, timeout.expired]);
      if (this.stopped) return this.recordProbe(false, 'listener stopped during the probe');
      // The connection was replaced meanwhile: the new one proves itself with its own probe.
      if (epoch !== this.epoch || this.replaying) return false;
      this.trustedUntil = sentAt + intervalMs + timeoutMs;
      // Everything committed before the probe was delivered (and applied) before it arrived.
      if (typeof seq === 'string') this.advance(seq);
      return this.recordProbe(true);
    } catch (error) {
      const reason =
        error instanceof DeadlineError
          ? `a probe NOTIFY sent through the DataSource pool did not arrive on the listener within ${timeoutMs} ms: ` +
            'the listener is deaf (a half-open or stalled connection), points at another server than the pool, ' +
            'or goes through a transaction-pooling proxy such as PgBouncer (which discards a notification that arrives while no client holds the server connection); ' +
            'peer invalidations may be missed, so memory is not trusted and the listener reconnects'
          : error instanceof LeaseRenewalError
            ? error.message
            : `could not send the probe NOTIFY through the DataSource pool: ${describeError(error)}`;
      this.recordProbe(false, reason);
      this.connection.reconnect('heartbeat probe failed');
      return false;
    } finally {
      timeout.cancel();
      this.pendingProbes.delete(payload);
    }
  }

  /**
   * LISTEN is active on a new connection: replay what it missed (or resync fully), then probe it.
   * Until the replay is done, payloads on the channel are held (in order) and memory not trusted.
   */
  private onConnected(): void {
    this.trustedUntil = 0;
    const epoch = ++this.epoch;
    if (!this.config.replay) {
      this.resync$$.next({ mode: 'full', reason: 'no-fence-log' });
      this.connectProbe = this.selfProbe();
      return;
    }
    this.held = [];
    this.heldOverflow = false;
    const replay: Promise<void> = this.replay(epoch, this.config.replay)
      .catch((error: unknown) => this.logger.error(`fence-log replay failed: ${describeError(error)}`))
      .finally(() => {
        if (this.replaying === replay) this.replaying = undefined;
      });
    this.replaying = replay;
    this.connectProbe = replay.then(() => this.selfProbe());
  }

  /**
   * Reads the log after the last applied sequence with a marker NOTIFY and waits for the marker.
   * A payload held before the marker belongs to an invalidation the rows include (the read holds
   * the fence lock shared: nothing commits between its snapshot and the marker), so it is applied
   * through the rows, once; one held after it is applied as it would have been.
   */
  private async replay(epoch: number, { read, timeoutMs }: { read: FenceLogReader; timeoutMs: number }): Promise<void> {
    const from = this.appliedSeq;
    const marker = encodeProbe(this.config.origin);
    this.marker = { payload: marker, seen: false };
    const arrived = new Promise<void>((resolve) => this.pendingProbes.set(marker, resolve));
    const timeout = deadline(timeoutMs, 'the fence-log replay');
    let range: FenceLogRange | undefined;
    let failure: unknown;
    try {
      range = await Promise.race([read(from, marker), timeout.expired]);
      await Promise.race([arrived, timeout.expired]);
    } catch (error) {
      failure = error;
    } finally {
      timeout.cancel();
      this.pendingProbes.delete(marker);
    }
    // A newer connection runs its own replay, from the same last sequence: it covers all of this one's.
    if (this.stopped || epoch !== this.epoch) return;
    const held = this.held ?? [];
    const overflow = this.heldOverflow;
    this.held = undefined;
    this.marker = undefined;
    if (range === undefined || failure !== undefined) {
      this.logger.warn(`could not replay the fence log after reconnecting (${describeError(failure)}): full resync`);
      this.resync$$.next({ mode: 'full', reason: 'replay-failed', ...(range ? { to: range.committed } : {}) });
      // Cleared after every held payload arrived: each still applies (harmless twice); up to `to`, all is applied.
      if (range) this.advance(range.committed);
      for (const item of held) this.handle(item.payload, item.channel, false);
      return;
    }
    const to = range.committed;
    if (overflow) {
      this.logger.warn(`over ${MAX_HELD} payloads arrived during the fence-log replay: full resync instead`);
      this.resync$$.next({ mode: 'full', reason: 'overflow', to });
    } else if (from !== undefined && BigInt(range.pruned) <= BigInt(from)) {
      this.resync$$.next({ mode: 'targeted', from, to, rows: range.rows });
    } else {
      const reason = from === undefined ? 'no-sequence' : 'pruned';
      if (from !== undefined) this.logger.warn(`the fence log was pruned past sequence ${from} (up to ${range.pruned}): full resync`);
      this.resync$$.next({ mode: 'full', reason, to });
    }
    this.advance(to);
    for (const item of held) this.handle(item.payload, item.channel, !item.afterMarker);
  }

  /** Every invalidation up to `seq` has been applied. */
  private advance(seq: string): void {
    if (this.appliedSeq === undefined || BigInt(seq) > BigInt(this.appliedSeq)) this.appliedSeq = seq;
  }

  private scheduleHeartbeat(): void {
    if (this.stopped) return;
    this.heartbeatTimer = setTimeout(() => {
      void this.selfProbe().finally(() => this.scheduleHeartbeat());
    }, this.config.heartbeat.intervalMs);
    this.heartbeatTimer.unref();
  }

  /** One log line per change, not one per heartbeat. */
  private recordProbe(ok: boolean, reason?: string): boolean {
    const before = this.probeResult.ok;
    this.probeResult = { ok, reason, at: new Date() };
    if (!ok && before !== false) this.logger.warn(`heartbeat failed: ${reason}`);
    if (ok && before === false) this.logger.log('heartbeat ok again: invalidations reach this process');
    return ok;
  }

  /** The control channel (when it is not the invalidation channel) carries probes and sync markers only. */
  private onPayload(payload: string, channel: string): void {
    if (isProbePayload(payload)) {
      if (this.marker?.payload === payload) this.marker.seen = true;
      this.pendingProbes.get(payload)?.();
      return;
    }
    if (this.held) {
      if (this.heldOverflow) return; // the full resync that follows covers it
      if (this.held.length >= MAX_HELD) {
        this.heldOverflow = true;
        this.held = [];
        return;
      }
      this.held.push({ payload, channel, afterMarker: this.marker?.seen ?? false });
      return;
    }
    this.handle(payload, channel, false);
  }

  /**
   * One payload. `covered`: it arrived before the replay's marker, so an invalidation in the
   * library's format (one with an origin: every such sender writes the fence log) was applied
   * through the replay's rows; the reference's format (no origin: its senders may write no log)
   * is applied again, harmlessly.
   */
  private handle(payload: string, channel: string, covered: boolean): void {
    try {
      if (isSyncPayload(payload)) {
        const sync = parseSync(payload, { signingSecret: this.config.signingSecret });
        if ('seq' in sync) this.syncs$$.next(sync);
        else this.rejected(sync.reason, payload, channel);
        return;
      }
      if (channel !== this.config.channel) {
        return this.rejected('not a probe or a sync marker (the control channel carries nothing else)', payload, channel);
      }
      const result = parseInvalidation(payload, { signingSecret: this.config.signingSecret });
      if (!result.ok) return this.rejected(result.reason, payload);
      const resolved = this.resolvePrefixes(result.message);
      if ('unmapped' in resolved) return this.rejectedUnmapped(resolved.unmapped, payload);
      this.counters.received++;
      if (covered && resolved.message.origin !== undefined) {
        this.counters.covered++;
        return;
      }
      this.messages$$.next(resolved.message);
    } catch (err) {
      // Subjects report subscriber errors themselves; this only guards our own bookkeeping.
      this.logger.error(`notification handling failed: ${describeError(err)}`);
    }
  }

  /**
   * The reference's servers name a realm mounted under a prefix by its prefix identifier
   * (`{"k":"module","r":"@cardstack/base/","m":["@cardstack/base/card-api.gts"]}`): resolved
   * through the `prefixes` option here, so that consumers only ever see URLs. A payload naming a
   * prefix that no configured one maps is not applied: `unmapped` says which.
   */
  private resolvePrefixes(message: InvalidationMessage): Resolved {
    if (message.kind === 'global') return { message };
    let realm = message.realm;
    if (isPrefixIdentifier(realm)) {
      const mapped = this.resolver.resolvePrefix(realm);
      if (mapped === undefined) return { unmapped: realm };
      try {
        realm = parseRealmURL(mapped);
      } catch {
        return { unmapped: realm };
      }
    }
    if (message.kind === 'realm') return { message: { ...message, realm } };
    const urls: string[] = [];
    for (const url of message.urls) {
      if (!isPrefixedURL(url)) {
        urls.push(url);
        continue;
      }
      const mapped = this.resolver.resolvePrefix(url);
      const named = isPrefixIdentifier(message.realm) ? message.realm : url.slice(0, url.lastIndexOf('/') + 1);
      if (mapped === undefined) return { unmapped: named };
      try {
        urls.push(canonicalURL(mapped));
      } catch {
        return { unmapped: named };
      }
    }
    return { message: { ...message, realm, urls } };
  }

  /** Counted like any rejection; logged at warn once per prefix (and at debug after that), so a busy unmapped realm cannot flood the log. */
  private rejectedUnmapped(prefix: string, payload: string): void {
    const reason = `no configured prefix maps ${JSON.stringify(prefix.slice(0, PREVIEW_CHARS))}`;
    this.counters.rejected++;
    this.counters.lastRejectReason = reason;
    if (!this.unmappedWarned.has(prefix) && this.unmappedWarned.size < UNMAPPED_PREFIXES_WARNED) {
      this.unmappedWarned.add(prefix);
      this.logger.warn(
        `ignoring invalidations on "${this.config.channel}" for ${JSON.stringify(prefix.slice(0, PREVIEW_CHARS))}: ` +
          'no entry of the prefixes option maps it (add one to apply them); further ones are counted and logged at debug level',
      );
      return;
    }
    const preview = payload.length > PREVIEW_CHARS ? `${payload.slice(0, PREVIEW_CHARS)}…` : payload;
    this.logger.debug(`rejected payload on "${this.config.channel}" (${reason}): ${JSON.stringify(preview)}`);
  }

  private rejected(reason: string, payload: string, channel = this.config.channel): void {
    this.counters.rejected++;
    this.counters.lastRejectReason = reason;
    this.logReject(reason, payload, channel);
  }

  private logReject(reason: string, payload: string, channel: string): void {
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
    this.logger.warn(`rejected payload on "${channel}" (${reason}): ${JSON.stringify(preview)}`);
  }
}
