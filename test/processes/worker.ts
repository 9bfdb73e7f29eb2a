/**
 * A separate OS process running its own Nest application context with ModuleCacheModule on
 * the shared database, driven by the parent over IPC (see harness.ts). Its DefinitionSource
 * reads a ground-truth table, so staleness is visible in what gets cached.
 */
import 'reflect-metadata';
import { Logger, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Pool } from 'pg';
import {
  CachingDefinitionLookup,
  ModuleCacheHealth,
  ModuleCacheInvalidationListener,
  ModuleCacheModule,
  moduleCacheEntities,
  type DefinitionSource,
  type DefinitionSourceContext,
  type LoadedModule,
  type ModuleCacheEvent,
  type ModuleCacheOptions,
} from '../../src';
import { MODULE_CACHE_COALESCER, MODULE_CACHE_DEDICATED_CONNECTION, MODULE_CACHE_ENTRIES } from '../../src/module-cache.constants';
import type { Coalescer } from '../../src/coalescing/coalescer';
import type { EntryStore } from '../../src/persistence/entries';
import type { DedicatedConnection } from '../../src/connection/dedicated-connection';
import type { WorkerSourceOptions } from './harness';

export interface WorkerRequest {
  id: number;
  cmd: string;
  args: unknown[];
}

const databaseUrl = process.env.DATABASE_URL!;
const options = JSON.parse(process.env.WORKER_OPTIONS ?? '{}') as ModuleCacheOptions;
const name = process.env.WORKER_NAME ?? `w${process.pid}`;
const sourceOptions = JSON.parse(process.env.WORKER_SOURCE ?? '{}') as WorkerSourceOptions;

/**
 * Reads `truth(url, version, deps, broken)`; the definitions carry the versions it saw (own and
 * its dependencies'), and a broken module reports its own error. Calls can be held behind a gate,
 * for every module or for one URL.
 */
class TruthSource implements DefinitionSource {
  readonly pool = new Pool({ connectionString: databaseUrl, max: 2, application_name: `truth-${name}` });
  constructor() {
    // Idle pooled connections die with a server restart: that is an event, not a crash.
    this.pool.on('error', () => undefined);
  }

  private readonly gates = new Map<string, { promise: Promise<void>; open: () => void }>();
  private readonly waitingFor = new Map<string, number>();
  calls = 0;
  /** Calls in progress per URL, and the most ever at once. */
  private readonly active = new Map<string, number>();
  readonly maxActive = new Map<string, number>();
  /** Calls whose AbortSignal fired while they were held at a gate (timeout or shutdown). */
  aborted = 0;
  delayMs = 0;

  /** Holds later calls (for `url`, or for every module when absent) until release(). */
  hold(url = '*'): void {
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.gates.set(url, { promise, open });
  }

  release(url?: string): void {
    for (const [key, gate] of this.gates) {
      if (url !== undefined && key !== url) continue;
      gate.open();
      this.gates.delete(key);
    }
  }

  waiting(url = '*'): number {
    return url === '*' ? [...this.waitingFor.values()].reduce((a, b) => a + b, 0) : (this.waitingFor.get(url) ?? 0);
  }

  async load(url: string, context: DefinitionSourceContext): Promise<LoadedModule | null> {
    const active = (this.active.get(url) ?? 0) + 1;
    this.active.set(url, active);
    this.maxActive.set(url, Math.max(active, this.maxActive.get(url) ?? 0));
    try {
      return await this.compute(url, context);
    } finally {
      this.active.set(url, this.active.get(url)! - 1);
    }
  }

  private async compute(url: string, { signal }: DefinitionSourceContext): Promise<LoadedModule | null> {
    this.calls++;
    const { rows } = await this.pool.query<{ version: number; deps: string[]; broken: boolean }>(
      `SELECT version, deps, broken FROM truth WHERE url = $1`,
      [url],
    );
    if (rows.length === 0) return null;
    const depVersions: Record<string, number> = {};
    if (rows[0].deps.length) {
      // Transitive reads follow the import graph the way a bundler would; direct ones stop at the imports.
      const deps = await this.pool.query<{ url: string; version: number }>(
        sourceOptions.transitiveReads
          ? `WITH RECURSIVE r(url) AS (SELECT unnest($1::text[]) UNION SELECT unnest(t.deps) FROM truth t JOIN r ON t.url = r.url)
             SELECT t.url, t.version FROM truth t JOIN r ON t.url = r.url WHERE t.url <> $2`
          : `SELECT url, version FROM truth WHERE url = ANY($1) AND url <> $2`,
        [rows[0].deps, url],
      );
      for (const d of deps.rows) depVersions[d.url] = d.version;
    }
    const gate = this.gates.get(url) ?? this.gates.get('*');
    if (gate) {
      this.waitingFor.set(url, (this.waitingFor.get(url) ?? 0) + 1);
      // An aborted call stops waiting and answers as if nothing happened: whatever it returns
      // after its signal fired must never be stored.
      const aborted = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      if ((await Promise.race([gate.promise.then(() => 'opened'), aborted.then(() => 'aborted')])) === 'aborted') this.aborted++;
      this.waitingFor.set(url, this.waitingFor.get(url)! - 1);
    }
    if (this.delayMs) await new Promise((r) => setTimeout(r, Math.random() * this.delayMs));
    const { version, deps, broken } = rows[0];
    return {
      definitions: { value: { version, depVersions } },
      deps,
      ...(broken ? { error: { message: `broken: ${url} v${version}`, status: 500 } } : {}),
    };
  }
}

async function main(): Promise<void> {
  const source = new TruthSource();
  const poolOptions = {
    max: sourceOptions.pool?.max ?? 4,
    ...(sourceOptions.pool?.applicationNamePrefix ? { application_name: `${sourceOptions.pool.applicationNamePrefix}${name}` } : {}),
  };

  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url: databaseUrl, entities: moduleCacheEntities, retryAttempts: 1, extra: poolOptions }),
      ModuleCacheModule.forRoot({ ...options, source }),
    ],
  })
  class WorkerModule {}

  const app: INestApplicationContext = await NestFactory.createApplicationContext(WorkerModule, {
    logger: process.env.WORKER_LOGS ? new Logger() : false,
  });
  app.enableShutdownHooks();
  const lookup = app.get(CachingDefinitionLookup);
  // null with `listener: false`: a peer that never hears of invalidations (the fence alone protects it).
  const listener = app.get(ModuleCacheInvalidationListener, { strict: false }) as ModuleCacheInvalidationListener | null;
  const events: ModuleCacheEvent[] = [];
  lookup.events$.subscribe((e) => {
    if (e.type !== 'hit' && e.type !== 'miss') events.push(e);
  });
  const internals = (lookup as unknown as { local: { memory: { get(url: string, scope: string, ttl: number): unknown } } }).local;
  // For the benchmarks: when (wall clock, comparable across processes) each of these events fired.
  const wallClock = () => performance.timeOrigin + performance.now();
  const timed: Array<{ type: string; at: number; url?: string; urls?: string[]; woken?: boolean }> = [];
  lookup.events$.subscribe((e) => {
    const at = wallClock();
    if (e.type === 'remote-invalidated') timed.push({ type: e.type, at, urls: e.urls });
    else if (e.type === 'coalesced') timed.push({ type: e.type, at, url: e.url, woken: e.woken });
    else if (e.type === 'persisted') timed.push({ type: e.type, at, url: e.url });
  });
  // Wake-ups of coalesced waiters (computed channel) as they arrive, before the coordinator acts on them.
  const connection = app.get<DedicatedConnection | null>(MODULE_CACHE_DEDICATED_CONNECTION, { strict: false });
  connection?.notifications$.subscribe(({ channel }) => timed.push({ type: 'raw-notification', at: wallClock(), url: channel }));

  // Fault injection: the n-th table read from now on fails (as a dropped pooled connection would).
  const repository = app.get<EntryStore>(MODULE_CACHE_ENTRIES);
  const realRead = repository.read.bind(repository);
  let readsUntilFailure = 0;
  repository.read = (...args: Parameters<EntryStore['read']>) => {
    if (readsUntilFailure > 0 && --readsUntilFailure === 0) return Promise.reject(new Error('table read failed (injected)'));
    return realRead(...args);
  };
  const health = app.get(ModuleCacheHealth);
  const coalescer = app.get<Coalescer | null>(MODULE_CACHE_COALESCER, { strict: false });

  const commands: Record<string, (...args: never[]) => unknown> = {
    lookup: (url: string, scope?: string) => lookup.lookup(url, { scope }),
    lookupCached: (url: string) => lookup.lookupCached(url),
    /** A lookup in a realm named by the caller (`realmURL`), registered in this process or not. */
    lookupIn: (url: string, realmURL: string) => lookup.lookup(url, { realmURL }),
    lookupCachedIn: (url: string, realmURL: string) => lookup.lookupCached(url, { realmURL }),
    prewarm: (realmURL: string, urls?: string[]) => lookup.prewarm(realmURL, urls),
    lookupAll: (urls: string[]) => Promise.all(urls.map((url) => lookup.lookup(url))),
    invalidate: (url: string) => lookup.invalidate(url),
    invalidateMany: (urls: string[]) => lookup.invalidateMany(urls),
    clearRealm: (realm: string) => lookup.clearRealm(realm),
    clearAll: () => lookup.clearAll(),
    registerRealm: (realm: string) => lookup.registerRealm(realm),
    unregisterRealm: (realm: string) => lookup.unregisterRealm(realm),
    stats: () => lookup.stats(),
    inMemory: (url: string, scope = 'public') => internals.memory.get(url, scope, Number.MAX_SAFE_INTEGER) !== undefined,
    events: () => events.splice(0),
    hold: (url?: string) => source.hold(url),
    release: (url?: string) => source.release(url),
    waiting: (url?: string) => source.waiting(url),
    sourceCalls: () => source.calls,
    abortedCalls: () => source.aborted,
    /** The most calls of the source for `url` that ever ran at once in this process. */
    maxConcurrent: (url: string) => source.maxActive.get(url) ?? 0,
    /** Flights of this process parked on a claim (a peer's, or one of its own flights'). */
    parked: () => coalescer?.parked ?? 0,
    setDelay: (ms: number) => void (source.delayMs = ms),
    listenerState: () => (listener ? { state: listener.state, probe: listener.probe, stats: listener.stats() } : { state: 'disabled' }),
    /** A heartbeat now (it also moves the listener's applied sequence up to the committed one). */
    selfProbe: () => listener?.selfProbe() ?? false,
    pid: () => process.pid,
    failRead: (n: number) => void (readsUntilFailure = n),
    health: () => health.check(),
    now: () => wallClock(),
    timedEvents: () => timed.splice(0),
    timedInvalidate: async (url: string) => {
      const start = wallClock();
      const urls = await lookup.invalidate(url);
      return { start, end: wallClock(), urls: urls.length };
    },
    /**
     * For the scale benchmark: from wall-clock `from` until `until`, `concurrency` loops each
     * looking up its own share of `urls` in turn, one at a time (loop j takes j, j + concurrency,
     * …: no two loops ever want the same URL at once, so none joins another's flight). `count`:
     * lookups completed by `until`; `total`: all completed (the last ones may finish after it).
     */
    lookupLoop: async (urls: string[], from: number, until: number, concurrency: number) => {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, from - wallClock())));
      let count = 0;
      let total = 0;
      const loop = async (_: unknown, j: number) => {
        for (let k = j; wallClock() < until; k += concurrency) {
          await lookup.lookup(urls[k % urls.length]);
          total++;
          if (wallClock() <= until) count++;
        }
      };
      await Promise.all(Array.from({ length: concurrency }, loop));
      return { count, total };
    },
  };

  /**
   * Recorded histories (test/support/history.ts): `historyRun` starts `loops` random loops of
   * lookup(url) and updates (truth version + 1, then invalidate(url)) until wall-clock `until`;
   * each operation is recorded with its invoke and complete time (wallClock()). `historyDrain`
   * hands over (and forgets) what was recorded so far, and whether the loops have finished.
   */
  const history: unknown[] = [];
  let historyLoopsRunning = 0;
  let writer: Pool | undefined;
  Object.assign(commands, {
    historyRun: (config: { urls: string[]; until: number; loops: number; updateRatio: number; pauseMs?: number }) => {
      writer ??= new Pool({ connectionString: databaseUrl, max: 2, application_name: `truth-writer-${name}` });
      writer.on('error', () => undefined);
      const pool = writer;
      const loop = async () => {
        historyLoopsRunning++;
        try {
          while (wallClock() < config.until && !closing) {
            const url = config.urls[Math.floor(Math.random() * config.urls.length)];
            const invoke = wallClock();
            if (Math.random() < config.updateRatio) {
              let version: number | undefined;
              try {
                const { rows } = await pool.query<{ version: number }>(
                  `UPDATE truth SET version = version + 1 WHERE url = $1 RETURNING version`,
                  [url],
                );
                version = rows[0].version;
                await lookup.invalidate(url);
                history.push({ kind: 'update', process: name, url, version, invoke, complete: wallClock(), ok: true });
              } catch (error) {
                const message = error instanceof Error ? error.message : String(error);
                history.push({ kind: 'update', process: name, url, version, invoke, complete: wallClock(), ok: false, error: message });
              }
            } else {
              try {
                const entry = (await lookup.lookup(url)) as {
                  definitions?: { value?: { version: number; depVersions: Record<string, number> } };
                };
                const value = entry.definitions?.value;
                const seen = value ? { ...value.depVersions, [url]: value.version } : {};
                history.push({ kind: 'read', process: name, url, seen, invoke, complete: wallClock(), ok: value !== undefined });
              } catch (error) {
                const message = error instanceof Error ? error.message : String(error);
                history.push({ kind: 'read', process: name, url, invoke, complete: wallClock(), ok: false, error: message });
              }
            }
            if (config.pauseMs) await new Promise((resolve) => setTimeout(resolve, Math.random() * config.pauseMs!));
          }
        } finally {
          historyLoopsRunning--;
        }
      };
      for (let i = 0; i < config.loops; i++) void loop();
    },
    historyDrain: () => ({ ops: history.splice(0), running: historyLoopsRunning }),
    /**
     * This process's wallClock() minus the kernel's realtime clock (Date.now(), whole ms: the
     * smallest difference over a 5 ms spin is the error to within microseconds). Processes'
     * wallClock() readings compare to within the spread of their errors.
     */
    clockError: () => {
      let error = Infinity;
      // Date.now() first: a preemption between the two readings can only make a sample larger, never smaller.
      for (const end = performance.now() + 5; performance.now() < end;) {
        const kernel = Date.now();
        error = Math.min(error, wallClock() - kernel);
      }
      return error;
    },
  });

  let closing = false;
  const close = async (code: number) => {
    if (closing) return;
    closing = true;
    source.release();
    await app.close();
    await source.pool.end();
    process.exit(code);
  };

  /**
   * Closes the app as a deployment would (gates stay shut: computations held at them are still
   * in flight), answers with how long app.close() took, then exits.
   */
  const closeMeasured = async (id: number) => {
    if (closing) return;
    closing = true;
    const started = performance.now();
    await app.close();
    const closeMs = performance.now() - started;
    process.send!({ id, ok: true, result: { closeMs, abortedCalls: source.aborted } });
    source.release();
    await source.pool.end();
    process.exit(0);
  };

  process.on('message', async (raw) => {
    const { id, cmd, args } = raw as WorkerRequest;
    // In a node:cluster worker the same channel also carries the relay's messages: not ours.
    if (typeof cmd !== 'string') return;
    if (cmd === 'exit') return void close(0);
    if (cmd === 'close') return void closeMeasured(id);
    try {
      const command = commands[cmd];
      if (!command) throw new Error(`unknown command ${cmd}`);
      const result = await (command as (...a: unknown[]) => unknown)(...args);
      process.send!({ id, ok: true, result: result === undefined ? null : JSON.parse(JSON.stringify(result)) });
    } catch (error) {
      const e = error as Error;
      const code = (error as { code?: unknown }).code;
      process.send!({ id, ok: false, error: { name: e.name, message: e.message, ...(typeof code === 'string' ? { code } : {}) } });
    }
  });
  process.on('disconnect', () => void close(0));
  process.send!({ ready: true, pid: process.pid });
}

// What kills a worker, named: the default report does not say which process it was.
process.on('uncaughtExceptionMonitor', (error, origin) => {
  console.error(`[worker ${name}] dying of an ${origin}: ${error instanceof Error ? error.stack : String(error)}`);
});

main().catch((error) => {
  console.error(`[worker ${name}] failed to start:`, error);
  process.exit(1);
});
