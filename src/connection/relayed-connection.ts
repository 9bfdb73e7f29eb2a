import { Logger } from '@nestjs/common';
import { BehaviorSubject, Subject, distinctUntilChanged, type Observable } from 'rxjs';
import { messages } from '../messages';
import { deadline } from '../timeout';
import { isRelayMessage, type RelayToWorker, type WorkerToRelay } from '../wire/relay-ipc';
import type { DedicatedConnection, ListenerState, RawNotification } from './dedicated-connection';

/** How often a worker repeats its hello while no relay has answered (the primary may still be starting it). */
const HELLO_INTERVAL_MS = 1_000;
const START_WAIT_MS = 10_000;

/**
 * The dedicated connection of a node:cluster worker in relay mode: the primary's, over IPC (see
 * ModuleCacheClusterRelay and wire/relay-ipc.ts). Same contract as PgDedicatedConnection:
 * notifications in order, the relay's state, a resync after every (re)connect, claims held for
 * this worker by the primary.
 */
export class RelayedConnection implements DedicatedConnection {
  private readonly logger = new Logger('ModuleCacheRelayedConnection');
  private readonly state$$ = new BehaviorSubject<ListenerState>('closed');
  private readonly notifications$$ = new Subject<RawNotification>();
  private readonly resync$$ = new Subject<void>();
  readonly state$: Observable<ListenerState> = this.state$$.pipe(distinctUntilChanged());
  readonly notifications$: Observable<RawNotification> = this.notifications$$.asObservable();
  readonly resync$: Observable<void> = this.resync$$.asObservable();
  reconnects = 0;

  private readonly pending = new Map<number, (message: RelayToWorker) => void>();
  private nextId = 1;
  private hello: NodeJS.Timeout | undefined;
  private answered = false;
  private stopped = false;
  private readonly onMessage = (message: unknown) => {
    if (isRelayMessage<RelayToWorker>(message)) this.receive(message);
  };

  constructor(private readonly config: { channels: string[]; queryTimeoutMs: number }) {}

  get state(): ListenerState {
    return this.state$$.value;
  }

  /**
   * Says hello to the relay until it answers. Resolves once the relay is listening and this
   * worker has resynced (so LISTEN is active before the application is ready), or when the relay
   * answers that it is not listening yet, or after START_WAIT_MS: it keeps trying either way.
   */
  async start(): Promise<void> {
    if (!process.send) throw new Error(messages.relayNotWorker());
    process.on('message', this.onMessage);
    this.state$$.next('connecting');
    const sayHello = () => {
      if (this.answered || this.stopped) return;
      this.post({ moduleCacheRelay: 1, type: 'hello', channels: this.config.channels });
      this.hello = setTimeout(sayHello, HELLO_INTERVAL_MS);
      this.hello.unref();
    };
    sayHello();
    const ready = new Promise<void>((resolve) => {
      const resync = this.resync$$.subscribe(() => done());
      const state = this.state$$.subscribe((s) => s !== 'connecting' && s !== 'listening' && done());
      const timer = setTimeout(() => {
        this.logger.warn(
          `no relay answered within ${START_WAIT_MS} ms: is a ModuleCacheClusterRelay started in the primary? (still trying)`,
        );
        done();
      }, START_WAIT_MS);
      const done = () => {
        clearTimeout(timer);
        resync.unsubscribe();
        state.unsubscribe();
        resolve();
      };
    });
    await ready;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.hello);
    this.post({ moduleCacheRelay: 1, type: 'bye' });
    process.off('message', this.onMessage);
    for (const resolve of this.pending.values()) resolve({ moduleCacheRelay: 1, type: 'locked', id: 0, result: 'unavailable' });
    this.pending.clear();
    this.state$$.next('closed');
    for (const subject of [this.notifications$$, this.resync$$, this.state$$]) subject.complete();
  }

  reconnect(reason: string): void {
    this.post({ moduleCacheRelay: 1, type: 'reconnect', reason });
  }

  async tryLock(key: string): Promise<boolean | 'unavailable'> {
    if (this.state !== 'listening') return 'unavailable';
    const answer = await this.request((id) => ({ moduleCacheRelay: 1, type: 'lock', id, key }));
    return answer?.type === 'locked' ? answer.result : 'unavailable';
  }

  async unlockAndNotify(key: string, channel: string, payload: string): Promise<void> {
    const answer = await this.request((id) => ({ moduleCacheRelay: 1, type: 'unlock', id, key, channel, payload }));
    if (answer === undefined) throw new Error(messages.relayNoAnswer());
    if (answer.type === 'unlocked' && answer.error) throw new Error(answer.error);
  }

  private async request(make: (id: number) => WorkerToRelay): Promise<RelayToWorker | undefined> {
    const id = this.nextId++;
    const timeout = deadline(this.config.queryTimeoutMs, 'a request to the relay');
    const answer = new Promise<RelayToWorker>((resolve) => this.pending.set(id, resolve));
    try {
      if (!this.post(make(id))) return undefined;
      return await Promise.race([answer, timeout.expired]);
    } catch {
      return undefined;
    } finally {
      timeout.cancel();
      this.pending.delete(id);
    }
  }

  private receive(message: RelayToWorker): void {
    if (this.stopped) return;
    switch (message.type) {
      case 'state':
        this.answered = true;
        this.reconnects = message.reconnects;
        if (message.state !== this.state) this.logger.log(`relay ${this.state} -> ${message.state}`);
        this.state$$.next(message.state);
        return;
      case 'resync':
        this.resync$$.next();
        return;
      case 'notification':
        this.notifications$$.next({ channel: message.channel, payload: message.payload });
        return;
      case 'locked':
      case 'unlocked':
        this.pending.get(message.id)?.(message);
    }
  }

  private post(message: WorkerToRelay): boolean {
    if (!process.send || !process.connected) return false;
    process.send(message);
    return true;
  }
}
