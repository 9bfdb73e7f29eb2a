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
  ModuleCacheInvalidationListener,
  ModuleCacheModule,
  moduleCacheEntities,
  type DefinitionSource,
  type LoadedModule,
  type ModuleCacheEvent,
  type ModuleCacheOptions,
} from '../../src';

export interface WorkerRequest {
  id: number;
  cmd: string;
  args: unknown[];
}

const databaseUrl = process.env.DATABASE_URL!;
const options = JSON.parse(process.env.WORKER_OPTIONS ?? '{}') as ModuleCacheOptions;
const name = process.env.WORKER_NAME ?? `w${process.pid}`;

/** Reads `truth(url, version, deps)`; the definitions carry the versions it saw (own and deps'). */
class TruthSource implements DefinitionSource {
  readonly pool = new Pool({ connectionString: databaseUrl, max: 2, application_name: `truth-${name}` });
  constructor() {
    // Idle pooled connections die with a server restart: that is an event, not a crash.
    this.pool.on('error', () => undefined);
  }

  private gate: { promise: Promise<void>; open: () => void } | undefined;
  waiting = 0;
  calls = 0;
  delayMs = 0;

  hold(): void {
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.gate = { promise, open };
  }

  release(): void {
    this.gate?.open();
    this.gate = undefined;
  }

  async load(url: string): Promise<LoadedModule | null> {
    this.calls++;
    const { rows } = await this.pool.query<{ version: number; deps: string[] }>(`SELECT version, deps FROM truth WHERE url = $1`, [url]);
    if (rows.length === 0) return null;
    const depVersions: Record<string, number> = {};
    if (rows[0].deps.length) {
      const deps = await this.pool.query<{ url: string; version: number }>(`SELECT url, version FROM truth WHERE url = ANY($1)`, [
        rows[0].deps,
      ]);
      for (const d of deps.rows) depVersions[d.url] = d.version;
    }
    if (this.gate) {
      this.waiting++;
      await this.gate.promise;
      this.waiting--;
    }
    if (this.delayMs) await new Promise((r) => setTimeout(r, Math.random() * this.delayMs));
    return { definitions: { value: { version: rows[0].version, depVersions } }, deps: rows[0].deps };
  }
}

async function main(): Promise<void> {
  const source = new TruthSource();

  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url: databaseUrl, entities: moduleCacheEntities, retryAttempts: 1, extra: { max: 4 } }),
      ModuleCacheModule.forRoot({ ...options, source }),
    ],
  })
  class WorkerModule {}

  const app: INestApplicationContext = await NestFactory.createApplicationContext(WorkerModule, {
    logger: process.env.WORKER_LOGS ? new Logger() : false,
  });
  app.enableShutdownHooks();
  const lookup = app.get(CachingDefinitionLookup);
  const listener = app.get(ModuleCacheInvalidationListener);
  const events: ModuleCacheEvent[] = [];
  lookup.events$.subscribe((e) => {
    if (e.type !== 'hit' && e.type !== 'miss') events.push(e);
  });
  const internals = lookup as unknown as { memory: { get(url: string, scope: string, ttl: number): unknown } };
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
  listener.rawNotifications$.subscribe(({ channel }) => timed.push({ type: 'raw-notification', at: wallClock(), url: channel }));

  const commands: Record<string, (...args: never[]) => unknown> = {
    lookup: (url: string, scope?: string) => lookup.lookup(url, { scope }),
    lookupCached: (url: string) => lookup.lookupCached(url),
    invalidate: (url: string) => lookup.invalidate(url),
    clearRealm: (realm: string) => lookup.clearRealm(realm),
    clearAll: () => lookup.clearAll(),
    stats: () => lookup.stats(),
    inMemory: (url: string, scope = 'public') => internals.memory.get(url, scope, Number.MAX_SAFE_INTEGER) !== undefined,
    events: () => events.splice(0),
    hold: () => source.hold(),
    release: () => source.release(),
    waiting: () => source.waiting,
    sourceCalls: () => source.calls,
    setDelay: (ms: number) => void (source.delayMs = ms),
    listenerState: () => ({ state: listener.state, probe: listener.probe, stats: listener.stats() }),
    pid: () => process.pid,
    now: () => wallClock(),
    timedEvents: () => timed.splice(0),
    timedInvalidate: async (url: string) => {
      const start = wallClock();
      const urls = await lookup.invalidate(url);
      return { start, end: wallClock(), urls: urls.length };
    },
  };

  let closing = false;
  const close = async (code: number) => {
    if (closing) return;
    closing = true;
    source.release();
    await app.close();
    await source.pool.end();
    process.exit(code);
  };

  process.on('message', async (raw) => {
    const { id, cmd, args } = raw as WorkerRequest;
    if (cmd === 'exit') return void close(0);
    try {
      const command = commands[cmd];
      if (!command) throw new Error(`unknown command ${cmd}`);
      const result = await (command as (...a: unknown[]) => unknown)(...args);
      process.send!({ id, ok: true, result: result === undefined ? null : JSON.parse(JSON.stringify(result)) });
    } catch (error) {
      const e = error as Error;
      process.send!({ id, ok: false, error: { name: e.name, message: e.message } });
    }
  });
  process.on('disconnect', () => void close(0));
  process.send!({ ready: true, pid: process.pid });
}

main().catch((error) => {
  console.error(`[worker ${name}] failed to start:`, error);
  process.exit(1);
});
