import { Logger } from '@nestjs/common';
import cluster, { type Worker } from 'node:cluster';
import type { Subscription } from 'rxjs';
import type { z } from 'zod';
import { controlChannelFor } from '../config/fields';
import { clusterRelaySchema } from '../config/listener';
import { PgDedicatedConnection } from '../connection/pg-connection';
import { describeError } from '../describe-error';
import { ModuleCacheOptionsError } from '../errors';
import { messages } from '../messages';
import { isRelayMessage, type RelayToWorker, type WorkerToRelay } from '../wire/relay-ipc';
import { encodeWakeUp } from '../wire/wake-up';

/** What `new ModuleCacheClusterRelay()` takes: see clusterRelaySchema (config/listener.ts) for each field and its default. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface ModuleCacheClusterRelayOptions extends z.input<typeof clusterRelaySchema> {}

const CHANNEL_KEYS: readonly string[] = ['channel', 'computedChannel', 'ackChannel'];

/** Validates and fills defaults with the listener's own field schemas; throws ModuleCacheOptionsError naming each bad option. */
function resolveRelayOptions(options: ModuleCacheClusterRelayOptions | undefined): z.output<typeof clusterRelaySchema> {
  const result = clusterRelaySchema.safeParse(options ?? {}, { reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const key = issue.path.join('.');
    // Only a channel name is echoed: a connection's value may hold a password.
    const got = CHANNEL_KEYS.includes(key) && issue.input !== undefined ? ` (got ${JSON.stringify(issue.input)})` : '';
    return `${key || '(options)'} ${issue.message}${got}`;
  });
  throw new ModuleCacheOptionsError(messages.relayOptions(problems));
}

/** A worker's heartbeat may ask for a new connection; one reconnect serves every worker, so not more often than this. */
const RECONNECT_REQUEST_INTERVAL_MS = 5_000;

/**
 * Cluster relay mode: the node:cluster primary holds the host's only dedicated connection (LISTEN
 * and claims) and relays it to its workers over IPC, so N workers cost one connection instead of
 * N. Workers opt in with `listener: { relay: true }`; their fence, heartbeat and coalescing work
 * as before, through the relay: notifications (and so heartbeat probes, sent through each
 * worker's pool) reach every worker in order, claims are taken on the primary's connection (one
 * holder per key within the host; a worker that exits loses its claims, and their waiters are
 * woken), and a (re)connect makes every worker resync.
 *
 *   const relay = new ModuleCacheClusterRelay({ connection: { connectionString: process.env.DATABASE_URL } });
 *   await relay.start(); // in the primary, before forking; workers are attached as they are forked
 */
export class ModuleCacheClusterRelay {
  private readonly logger = new Logger('ModuleCacheClusterRelay');
  private readonly connection: PgDedicatedConnection;
  private readonly channels: string[];
  private readonly computedChannel: string;
  private readonly workers = new Set<Worker>();
  /** Claim key → the worker holding it (the session lock is the primary's: re-entrant, so arbitrated here). */
  private readonly holders = new Map<string, Worker>();
  private readonly subscription: Subscription;
  private lastReconnectRequest = 0;
  private readonly onFork = (worker: Worker) => this.attach(worker);

  constructor(options: ModuleCacheClusterRelayOptions) {
    const resolved = resolveRelayOptions(options);
    this.computedChannel = resolved.computedChannel;
    const control = controlChannelFor(resolved);
    this.channels = [resolved.channel, ...(control === resolved.channel ? [] : [control]), this.computedChannel, resolved.ackChannel];
    this.connection = new PgDedicatedConnection({
      connection: resolved.connection,
      applicationName: resolved.applicationName,
      channels: this.channels,
      reconnect: resolved.reconnect,
      queryTimeoutMs: resolved.queryTimeoutMs,
    });
    this.subscription = this.connection.notifications$.subscribe((n) =>
      this.broadcast({ moduleCacheRelay: 1, type: 'notification', ...n }),
    );
    this.subscription.add(
      this.connection.state$.subscribe((state) =>
        this.broadcast({ moduleCacheRelay: 1, type: 'state', state, reconnects: this.connection.reconnects }),
      ),
    );
    this.subscription.add(
      this.connection.resync$.subscribe(() => {
        // Claims died with the old session.
        this.holders.clear();
        this.broadcast({ moduleCacheRelay: 1, type: 'resync' });
      }),
    );
  }

  /** Connects and LISTENs (retrying in the background if it cannot yet), and attaches every worker forked from now on. */
  async start(): Promise<void> {
    if (!cluster.isPrimary) throw new Error(messages.relayNotPrimary());
    cluster.on('fork', this.onFork);
    for (const worker of Object.values(cluster.workers ?? {})) if (worker) this.attach(worker);
    await this.connection.start();
  }

  /** Releases every claim, closes the connection. */
  async stop(): Promise<void> {
    cluster.off('fork', this.onFork);
    this.subscription.unsubscribe();
    this.workers.clear();
    this.holders.clear();
    await this.connection.stop();
  }

  /** Relays to `worker` (forked workers are attached by start() on their own). */
  attach(worker: Worker): void {
    if (this.workers.has(worker)) return;
    worker.on('message', (message: unknown) => {
      if (isRelayMessage<WorkerToRelay>(message)) void this.onMessage(worker, message);
    });
    worker.once('exit', () => this.detach(worker));
  }

  private async onMessage(worker: Worker, message: WorkerToRelay): Promise<void> {
    switch (message.type) {
      case 'hello': {
        const missing = message.channels.filter((c) => !this.channels.includes(c));
        if (missing.length) {
          this.logger.error(
            `worker ${worker.id} needs channels this relay does not LISTEN to: ${missing.join(', ')} (give the relay the same channel options and wireFormat)`,
          );
        }
        this.workers.add(worker);
        this.send(worker, { moduleCacheRelay: 1, type: 'state', state: this.connection.state, reconnects: this.connection.reconnects });
        // Whatever the worker had before is not known to be current: it starts (over) from here.
        if (this.connection.state === 'listening') this.send(worker, { moduleCacheRelay: 1, type: 'resync' });
        return;
      }
      case 'lock': {
        let result: boolean | 'unavailable' = false;
        // The session lock is re-entrant: a second attempt for a key already held (or being taken)
        // for another worker would succeed, and leave the lock held once more than it is released.
        // So the key is reserved for this worker before the attempt, and the others are told no.
        if (!this.holders.has(message.key)) {
          this.holders.set(message.key, worker);
          result = await this.connection.tryLock(message.key);
          const stillReserved = this.holders.get(message.key) === worker;
          if (result !== true) {
            if (stillReserved) this.holders.delete(message.key);
          } else if (!stillReserved) {
            // The worker left, or the connection was replaced (resync), while the attempt ran:
            // whichever session granted it, give it back.
            result = 'unavailable';
            void this.connection
              .unlockAndNotify(message.key, this.computedChannel, encodeWakeUp(message.key, `relay-${worker.id}`))
              .catch(() => undefined);
          }
        }
        this.send(worker, { moduleCacheRelay: 1, type: 'locked', id: message.id, result });
        return;
      }
      case 'unlock': {
        let error: string | undefined;
        if (this.holders.get(message.key) === worker) {
          this.holders.delete(message.key);
          error = await this.connection
            .unlockAndNotify(message.key, message.channel, message.payload)
            .then(() => undefined)
            .catch((e: unknown) => describeError(e));
        }
        this.send(worker, { moduleCacheRelay: 1, type: 'unlocked', id: message.id, ...(error ? { error } : {}) });
        return;
      }
      case 'reconnect': {
        const now = Date.now();
        if (now - this.lastReconnectRequest < RECONNECT_REQUEST_INTERVAL_MS) return;
        this.lastReconnectRequest = now;
        this.connection.reconnect(`worker ${worker.id}: ${message.reason}`);
        return;
      }
      case 'bye':
        this.detach(worker);
    }
  }

  /** A worker gone: its claims are let go, with a wake-up, so that its waiters take over at once. */
  private detach(worker: Worker): void {
    this.workers.delete(worker);
    for (const [key, holder] of this.holders) {
      if (holder !== worker) continue;
      this.holders.delete(key);
      void this.connection
        .unlockAndNotify(key, this.computedChannel, encodeWakeUp(key, `relay-${worker.id}`))
        .catch((e: unknown) => this.logger.warn(`could not release claim ${key} of worker ${worker.id}: ${describeError(e)}`));
    }
  }

  private broadcast(message: RelayToWorker): void {
    for (const worker of this.workers) this.send(worker, message);
  }

  private send(worker: Worker, message: RelayToWorker): void {
    if (worker.isConnected()) worker.send(message);
  }
}
