import { afterAll, describe, expect, it } from 'vitest';
import { migrate } from '../support/app';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/database';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../support/embedded-postgres';
import { waitFor } from '../support/wait';
import { spawnWorkers, TRUTH_SQL } from '../processes/harness';

const REALM = 'https://example.test/realm/';
const url = (i: number) => `${REALM}m${i}.ts`;
const cleanups: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

async function seed(db: { query: TestDatabase['query'] }, modules: number): Promise<void> {
  await migrate((db as TestDatabase).url);
  await db.query(TRUTH_SQL);
  // Chains of five: m(i) imports m(i-1) unless i is a multiple of 5.
  await db.query(
    `INSERT INTO truth (url, deps)
     SELECT $1 || 'm' || i || '.ts', CASE WHEN i % 5 = 0 THEN '{}'::text[] ELSE ARRAY[$1 || 'm' || (i - 1) || '.ts'] END
       FROM generate_series(0, $2 - 1) i`,
    [REALM, modules],
  );
}

describe('faults and stress (separate OS processes)', () => {
  it('randomized stress: 4 processes, concurrent lookups and invalidations, no stale row after quiescence', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const modules = 60;
    await seed(db, modules);
    // Churn here (30% of ops invalidate, chains of 5 fanning out) is far beyond production: a chain
    // lookup can be discarded several times in a row. With the default retry budget, churn alone
    // must still fail no lookup (the waiting callers get the last result, which is not stored).
    const workers = await spawnWorkers(4, db.url, (i) => ({
      realms: [REALM],
      sourceTimeoutMs: 10_000,
      listener: { applicationName: `mc-stress-${i}` },
    }));
    cleanups.push(() => Promise.all(workers.map((w) => w.stop())));
    await Promise.all(workers.map((w) => w.call('setDelay', 4)));

    const opsPerWorker = 250;
    let lookups = 0;
    let invalidations = 0;
    let failures = 0;
    const reasons = new Map<string, number>();
    const failed = (error: Error) => {
      failures++;
      const reason = error.message.replace(/https?:\/\/\S+/g, '<url>');
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    };
    await Promise.all(
      workers.map(async (worker) => {
        const inFlight: Promise<unknown>[] = [];
        for (let op = 0; op < opsPerWorker; op++) {
          const target = url(Math.floor(Math.random() * modules));
          if (Math.random() < 0.3) {
            invalidations++;
            // The module changes first, then the change is announced: the order a real writer follows.
            inFlight.push(
              db
                .query(`UPDATE truth SET version = version + 1 WHERE url = $1`, [target])
                .then(() => worker.call('invalidate', target))
                .catch(failed),
            );
          } else {
            lookups++;
            inFlight.push(worker.call('lookup', target).catch(failed));
          }
          if (inFlight.length >= 8) await Promise.all(inFlight.splice(0));
        }
        await Promise.all(inFlight);
      }),
    );

    const stale = await db.query<{ url: string }>(
      `SELECT e.url FROM module_cache_entries e JOIN truth t ON t.url = e.url
        WHERE (e.definitions->'value'->>'version')::int <> t.version
           OR EXISTS (SELECT 1 FROM truth d WHERE d.url = ANY(t.deps)
                       AND (e.definitions->'value'->'depVersions'->>d.url)::int IS DISTINCT FROM d.version)`,
    );
    const [{ rows }] = await db.query<{ rows: number }>(`SELECT count(*)::int AS rows FROM module_cache_entries`);
    const stats = await Promise.all(workers.map((w) => w.call<{ discards: number; servedUnpersisted: number }>('stats')));
    const discards = stats.reduce((n, s) => n + s.discards, 0);
    const unpersisted = stats.reduce((n, s) => n + s.servedUnpersisted, 0);
    process.stdout.write(
      `[stress] 4 processes, ${lookups} lookups + ${invalidations} invalidations, ${failures} failed ops${failures ? ` (${JSON.stringify(Object.fromEntries(reasons))})` : ''}, ${discards} discarded computations, ${unpersisted} lookups served unpersisted after every attempt was invalidated, ${rows} rows at the end, stale rows: ${stale.length}\n`,
    );
    expect(stale).toEqual([]);
    expect(Object.fromEntries(reasons)).toEqual({});
    expect(failures).toBe(0);
    expect(rows).toBeGreaterThan(0);
  }, 180_000);

  it('churn: 4 processes, 16 modules, a stream of invalidations — no lookup fails and no row is stale', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const modules = 16;
    await seed(db, modules);
    const workers = await spawnWorkers(4, db.url, (i) => ({ realms: [REALM], listener: { applicationName: `mc-churn-${i}` } }));
    cleanups.push(() => Promise.all(workers.map((w) => w.stop())));
    await Promise.all(workers.map((w) => w.call('setDelay', 2)));
    let done = false;
    let lookups = 0;
    let invalidations = 0;
    const failures: string[] = [];
    const fail = (e: Error) => failures.push(e.message.replace(/https?:\/\/\S+/g, '<url>'));
    // Three writers at once: each module changes, then the change is announced through some process.
    const started = performance.now();
    const churn = Promise.all(
      Array.from({ length: 3 }, async () => {
        while (!done) {
          const target = url(Math.floor(Math.random() * modules));
          await db.query(`UPDATE truth SET version = version + 1 WHERE url = $1`, [target]);
          await workers[invalidations++ % workers.length].call('invalidate', target).catch(fail);
        }
      }),
    ).then(() => invalidations / ((performance.now() - started) / 1000));
    await Promise.all(
      workers.map(async (w) => {
        for (let i = 0; i < 250; i++) {
          lookups += 4;
          await Promise.all([0, 1, 2, 3].map(() => w.call('lookup', url(Math.floor(Math.random() * modules))).catch(fail)));
        }
      }),
    );
    done = true;
    const rate = await churn;
    const stale = await db.query<{ url: string }>(
      `SELECT e.url FROM module_cache_entries e JOIN truth t ON t.url = e.url WHERE (e.definitions->'value'->>'version')::int <> t.version`,
    );
    const unpersisted = (await Promise.all(workers.map((w) => w.call<{ servedUnpersisted: number }>('stats')))).reduce(
      (n, s) => n + s.servedUnpersisted,
      0,
    );
    process.stdout.write(
      `[churn] 4 processes, 16 modules: ${lookups} lookups, ${invalidations} invalidations (${rate.toFixed(0)}/s), ` +
        `${failures.length} failed operations, ${unpersisted} served unpersisted, stale rows: ${stale.length}\n`,
    );
    expect(failures).toEqual([]);
    expect(stale).toEqual([]);
  }, 180_000);

  it('Postgres stopped and started: listeners reconnect and resync, lookups and broadcasts work again', async () => {
    const pg: EmbeddedDatabase = await startEmbeddedPostgres();
    cleanups.push(() => pg.stop());
    await adminQuery(`CREATE DATABASE restart_test`, [], pg.url);
    const dbUrl = pg.url.replace(/\/postgres$/, '/restart_test');
    const db = { url: dbUrl, query: (sql: string, params?: unknown[]) => adminQuery(sql, params, dbUrl) } as unknown as TestDatabase;
    await seed(db, 10);
    const workers = await spawnWorkers(2, dbUrl, (i) => ({
      realms: [REALM],
      listener: { applicationName: `mc-restart-${i}`, reconnect: { initialDelayMs: 50, maxDelayMs: 500 } },
    }));
    cleanups.push(() => Promise.all(workers.map((w) => w.stop())));
    const [a, b] = workers;
    await b.call('lookup', url(1));
    await b.call('events'); // from here on

    await pg.pause();
    await waitFor(async () => (await b.call<{ state: string }>('listenerState')).state === 'reconnecting', 15_000, 'B to notice');
    const restarted = performance.now();
    await pg.resume();
    await waitFor(async () => (await b.call<{ state: string }>('listenerState')).state === 'listening', 30_000, 'B to listen again');
    await waitFor(async () => (await a.call<{ state: string }>('listenerState')).state === 'listening', 30_000, 'A to listen again');
    process.stdout.write(`[restart] listeners back ${(performance.now() - restarted).toFixed(0)} ms after Postgres restarted\n`);

    // The fence log survived the restart and nothing was invalidated: B's replay kept its memory warm.
    const resyncs: Array<{ type: string }> = [];
    await waitFor(
      async () => (
        resyncs.push(...(await b.call<Array<{ type: string }>>('events')).filter((e) => e.type === 'resync')),
        resyncs.length > 0
      ),
      30_000,
      "B's resync",
    );
    expect(resyncs).toEqual([expect.objectContaining({ mode: 'targeted', rows: 0, evicted: 0 })]);
    expect(await b.call('inMemory', url(1))).toBe(true);
    // The pools' connections died with the server: the first query may fail, the next ones work.
    await waitFor(() => b.call('lookup', url(1)).then(() => true), 15_000, 'lookups to work again');
    await a.call('invalidate', url(1));
    await waitFor(async () => !(await b.call('inMemory', url(1))), 10_000, 'a broadcast after the restart');
  }, 120_000);

  it('shutdown leaves no listener connection behind', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    await seed(db, 2);
    const [w] = await spawnWorkers(1, db.url, () => ({ realms: [REALM], listener: { applicationName: 'mc-shutdown-0' } }));
    await w.call('lookup', url(0));
    expect(await db.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'mc-shutdown-0'`)).toHaveLength(1);
    expect(await w.stop()).toBe(0);
    expect(await db.query(`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'mc-shutdown-0%'`)).toEqual([]);
  }, 60_000);
});
