import { Client } from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { firstValueFrom, filter } from 'rxjs';
import {
  DefinitionSourceError,
  InvalidationBroadcastError,
  ModuleCacheInvalidationListener,
  type ModuleCacheEvent,
  type ModuleCacheHealthReport,
} from '../../src';
import { createCacheApp, migrate, type CacheApp } from '../support/app';
import { backendPid, signalsBackends } from '../support/backends';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/database';
import { startEmbeddedPostgres } from '../../sample/embedded-postgres';
import { FakeSource } from '../support/fake-source';
import { startTcpProxy } from '../support/faults/tcp-proxy';
import { waitFor } from '../support/wait';
import { spawnWorker, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * Availability under faults, with real processes: crossed import cycles between two processes,
 * a claim whose follow-up read fails, a listener that goes deaf for good, operational failures
 * inside a dependency lookup, a NOTIFY queue that is really full.
 */
const REALM = 'https://example.test/avail/';
const url = (n: string) => `${REALM}${n}.ts`;

interface Entry {
  url: string;
  definitions: { value: { version: number } };
  error?: { message: string };
}

let db: TestDatabase;
const workers: WorkerHandle[] = [];
const thaw: number[] = [];

async function worker(name: string, options: Record<string, unknown> = {}): Promise<WorkerHandle> {
  const w = await spawnWorker(name, db.url, { realms: [REALM], listener: { applicationName: `mc-avail-${name}` }, ...options });
  workers.push(w);
  return w;
}

async function module(name: string, deps: string[] = [], version = 1): Promise<void> {
  await db.query(
    `INSERT INTO truth (url, deps, version) VALUES ($1, $2, $3) ON CONFLICT (url) DO UPDATE SET deps = EXCLUDED.deps, version = EXCLUDED.version`,
    [url(name), deps.map(url), version],
  );
}

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
}, 60_000);

afterEach(async () => {
  thaw.splice(0).forEach((pid) => process.kill(pid, 'SIGCONT'));
  await Promise.all(workers.map((w) => w.call('release').catch(() => undefined)));
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

afterAll(async () => {
  await db?.drop();
});

describe('no cross-process stalls', () => {
  it('crossed lookups of an import cycle in two processes finish without waiting on each other, and store no error', async () => {
    await module('a1', ['b1']);
    await module('b1', ['a1']);
    // A stall would wait for the coalescing timeout and then fail: make that short and visible.
    const options = { coalesceWaitTimeoutMs: 30_000, coalesceTakeoverCheckMs: 60_000 };
    const p1 = await worker('p1', options);
    const p2 = await worker('p2', options);
    // Each process claims one side of the cycle first, so that each then waits for the other's claim.
    await p1.call('hold', url('a1'));
    await p2.call('hold', url('b1'));
    const started = performance.now();
    const first = [p1.call<Entry>('lookup', url('a1')), p2.call<Entry>('lookup', url('b1'))];
    await waitFor(
      async () => (await p1.call<number>('waiting', url('a1'))) === 1 && (await p2.call<number>('waiting', url('b1'))) === 1,
      10_000,
      'both claims held',
    );
    const crossed = [p1.call<Entry>('lookup', url('b1')), p2.call<Entry>('lookup', url('a1'))];
    await p1.call('release', url('a1'));
    await p2.call('release', url('b1'));
    const results = await Promise.all([...first, ...crossed]);
    const ms = performance.now() - started;
    process.stdout.write(`[cycle] 4 crossed lookups of a1 <-> b1 in 2 processes: ${ms.toFixed(0)} ms\n`);
    expect(results.map((r) => r.error)).toEqual([undefined, undefined, undefined, undefined]);
    expect(await db.query(`SELECT url FROM module_cache_entries WHERE error IS NOT NULL`)).toEqual([]);
  }, 60_000);

  it('a claim whose follow-up read fails is released at once: a peer computes without waiting for a takeover', async () => {
    await module('c2');
    const options = { coalesceTakeoverCheckMs: 600_000, coalesceWaitTimeoutMs: 600_000 };
    const p1 = await worker('p1', options);
    const p2 = await worker('p2', options);
    await p1.call('failRead', 2); // the miss is read, the claim taken, then the read after the claim fails
    await expect(p1.call('lookup', url('c2'))).rejects.toThrow(/table read failed \(injected\)/);
    // A leaked claim would leave p2 waiting for ten minutes.
    expect((await p2.call<Entry>('lookup', url('c2'))).definitions.value.version).toBe(1);
    expect(await p2.call<number>('sourceCalls')).toBe(1);
  }, 60_000);
});

describe('a listener that goes deaf for good', () => {
  it('is found out by the heartbeat: within the bound the process reconnects, resyncs and serves the new version; health is up after', async (ctx) => {
    if (!(await signalsBackends(db))) return ctx.skip();
    await module('d3');
    const a = await worker('a');
    const b = await worker('b'); // default heartbeat: every 5 s, 5 s to arrive
    expect((await b.call<Entry>('lookup', url('d3'))).definitions.value.version).toBe(1);
    expect((await b.call<ModuleCacheHealthReport>('health')).healthy).toBe(true);
    const deaf = await backendPid(db, 'mc-avail-b');
    await b.call('events'); // from here on
    process.kill(deaf, 'SIGSTOP'); // never resumed during the test: a half-open connection
    thaw.push(deaf);
    await module('d3', [], 2);
    await a.call('invalidate', url('d3'));
    const invalidated = performance.now();
    await waitFor(
      async () => (await b.call<Entry>('lookup', url('d3'))).definitions.value.version === 2,
      20_000,
      'B to serve the new version',
      100,
    );
    const served = performance.now() - invalidated;
    await waitFor(
      async () => (await b.call<ModuleCacheHealthReport>('health')).healthy,
      20_000,
      'health up again on a new connection',
      100,
    );
    process.stdout.write(
      `[deaf] frozen listener backend: B served the new version ${(served / 1000).toFixed(1)} s after the invalidation (bound: 15 s)\n`,
    );
    // Found out by the heartbeat (nothing else drops this connection): the connection was replaced and memory resynced.
    // (Health is down only between the failed probe and the new connection's first one: too brief to poll for here;
    // observability.test.ts holds it down with a proxy and checks it.)
    const seen = await b.call<ModuleCacheEvent[]>('events');
    // The missed invalidation of d3 came back through the new connection's replay of the fence log.
    expect(seen).toEqual(
      expect.arrayContaining([
        { type: 'listener-state', state: 'reconnecting' },
        expect.objectContaining({ type: 'resync', mode: 'targeted' }),
      ]),
    );
    const [{ n }] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'mc-avail-b'`);
    expect(n).toBe(2); // the frozen backend, and the new connection
  }, 60_000);
});

describe('a listener that has lost its connection', () => {
  // Notifications sent while it is disconnected are lost: memory cannot be trusted from the
  // moment the connection goes, not only once the next heartbeat is overdue (up to 10 s later).
  it('stops trusting memory at once, and serves what a peer changed meanwhile from the table', async () => {
    await module('lost');
    const a = await worker('a');
    const proxy = await startTcpProxy(db.url);
    let b: CacheApp | undefined;
    try {
      const source = new FakeSource().define(url('lost'));
      const applicationName = 'mc-avail-lost';
      b = await createCacheApp(db.url, {
        realms: [REALM],
        source,
        listener: { applicationName, connection: { connectionString: proxy.url }, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } },
      });
      const listener = b.app.get(ModuleCacheInvalidationListener);
      await b.lookup.lookup(url('lost'));
      await b.lookup.lookup(url('lost'));
      expect(b.lookup.stats().hits.memory).toBe(1);
      // The connection goes, and no new one can be made until accept().
      proxy.refuse();
      const lost = firstValueFrom(listener.state$.pipe(filter((s) => s === 'reconnecting')));
      await db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
      await lost;
      // A peer changes the module while B cannot hear it.
      source.version = 2;
      await a.call('invalidate', url('lost'));
      expect((await b.lookup.lookup(url('lost')))?.definitions).toEqual({ value: { version: 2, url: url('lost') } });
      expect(b.lookup.stats().hits.memory).toBe(1);
      proxy.accept();
      await firstValueFrom(listener.state$.pipe(filter((s) => s === 'listening')));
    } finally {
      await b?.close();
      await proxy.close();
    }
  });
});

describe('operational failures are not cached', () => {
  it('a dependency whose source throws fails the consumer lookup, and nothing is stored for either', async () => {
    const source = new FakeSource().define(`${REALM}e4.ts`, ['./d4.ts']).set(`${REALM}d4.ts`, () => {
      throw new Error('disk on fire');
    });
    // 'compute': the import is looked up, so computed (the reference's default never computes a dependency).
    const app = await createCacheApp(db.url, { realms: [REALM], source, listener: false, dependencyErrors: 'compute' });
    try {
      const error = await app.lookup.lookup(`${REALM}e4.ts`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DefinitionSourceError);
      expect((error as Error).message).toMatch(/d4\.ts: disk on fire/);
      expect(await db.query(`SELECT url FROM module_cache_entries WHERE url LIKE $1`, [`${REALM}%4.ts`])).toEqual([]);
    } finally {
      await app.close();
    }
  });
});

describe('a NOTIFY queue that is really full', () => {
  it('fails the invalidation at commit with a clear error, rolls the delete back, and keeps the local invalidation', async () => {
    // Its own server: the queue is made tiny (PostgreSQL 17+: max_notify_queue_pages) and then filled for real.
    const pg = await startEmbeddedPostgres({ postgresFlags: ['-c', 'fsync=off', '-c', 'max_notify_queue_pages=64'] });
    const dbUrl = pg.url.replace(/\/postgres$/, '/full_queue');
    const blocker = new Client({ connectionString: dbUrl });
    let app: CacheApp | undefined;
    try {
      await adminQuery(`CREATE DATABASE full_queue`, [], pg.url);
      await migrate(dbUrl);
      app = await createCacheApp(dbUrl, { realms: [REALM], source: new FakeSource().define(`${REALM}q.ts`), listener: false });
      await app.lookup.lookup(`${REALM}q.ts`);
      // A listener inside an open transaction reads nothing: the queue cannot shrink past it.
      await blocker.connect();
      await blocker.query('LISTEN module_cache_invalidated');
      await blocker.query('BEGIN');
      const payload = 'x'.repeat(7_900);
      for (;;) {
        const full = await adminQuery(`SELECT pg_notify('module_cache_invalidated', $1)`, [payload], dbUrl).then(
          () => false,
          (e: Error) => /too many notifications/.test(e.message),
        );
        if (full) break;
      }
      const error = await app.lookup.invalidate(`${REALM}q.ts`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidationBroadcastError);
      expect((error as Error).message).toMatch(/peers were not notified\): too many notifications in the NOTIFY queue/);
      const logged = await adminQuery(`SELECT seq FROM module_cache_fence_log`, [], dbUrl);
      expect(await adminQuery(`SELECT url FROM module_cache_entries`, [], dbUrl)).toEqual([{ url: `${REALM}q.ts` }]);
      expect(app.lookup.stats().memoryEntries).toBe(0);
      await expect(app.lookup.clearRealm(REALM)).rejects.toBeInstanceOf(InvalidationBroadcastError);
      await expect(app.lookup.clearAll()).rejects.toBeInstanceOf(InvalidationBroadcastError);
      // Nothing of those transactions survived either.
      expect(await adminQuery(`SELECT url FROM module_cache_entries`, [], dbUrl)).toEqual([{ url: `${REALM}q.ts` }]);
      expect(await adminQuery(`SELECT seq FROM module_cache_fence_log`, [], dbUrl)).toEqual(logged);
    } finally {
      await blocker.end().catch(() => undefined);
      await app?.close();
      await pg.stop();
    }
  }, 120_000);
});
