import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { waitFor } from '../support/wait';
import { spawnWorkers, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

const REALM = 'https://example.test/realm/';
let db: TestDatabase;
let workers: WorkerHandle[];
const url = (n: string) => `${REALM}${n}.ts`;

interface Entry {
  definitions: { value: { version: number } };
  createdAt: string;
}

async function totalCalls(ws = workers): Promise<number> {
  return (
    await Promise.all(ws.filter((w) => w.child.exitCode === null && w.child.signalCode === null).map((w) => w.call<number>('sourceCalls')))
  ).reduce((a, b) => a + b, 0);
}

async function claimHeld(): Promise<boolean> {
  const rows = await db.query(`SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                                WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND d.datname = current_database()`);
  return rows.length > 0;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url) SELECT $1 || 'k' || i || '.ts' FROM generate_series(0, 99) i`, [REALM]);
  await db.query(`INSERT INTO truth (url) VALUES ($1), ($2), ($3)`, [url('fresh'), url('victim'), url('changing')]);
  workers = await spawnWorkers(4, db.url, (i) => ({
    realms: [REALM],
    coalesceTakeoverCheckMs: 200,
    listener: { applicationName: `mc-coalesce-${i}` },
  }));
}, 120_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await db.drop();
});

describe('cross-process populate coalescing (4 OS processes)', () => {
  it('4 processes x 50 concurrent lookups of one fresh key: exactly 1 computation, all 200 callers get the same entry', async () => {
    const before = await totalCalls();
    await Promise.all(workers.map((w) => w.call('hold')));
    const results = workers.flatMap((w) => Array.from({ length: 50 }, () => w.call<Entry>('lookup', url('fresh'))));
    await waitFor(
      async () => (await Promise.all(workers.map((w) => w.call<number>('waiting')))).reduce((a, b) => a + b) === 1,
      10_000,
      'one computation',
    );
    await waitFor(claimHeld, 5000, 'the claim');
    await Promise.all(workers.map((w) => w.call('release')));
    const entries = await Promise.all(results);
    const computations = (await totalCalls()) - before;
    const coalesced = (await Promise.all(workers.map((w) => w.call<{ coalescedWaits: number }>('stats')))).reduce(
      (n, s) => n + s.coalescedWaits,
      0,
    );
    process.stdout.write(
      `[coalesce] 4 processes x 50 lookups: ${computations} computation(s), ${entries.length} callers, ${coalesced} process-level waits\n`,
    );
    expect(computations).toBe(1);
    expect(entries).toHaveLength(200);
    expect(new Set(entries.map((e) => JSON.stringify([e.definitions, e.createdAt]))).size).toBe(1);
  });

  it('many keys with random overlaps: computations == distinct keys, no waiter times out', async () => {
    const before = await totalCalls();
    const keys = new Set<string>();
    const lookups = workers.flatMap((w) =>
      Array.from({ length: 100 }, () => {
        const key = url(`k${Math.floor(Math.random() * 100)}`);
        keys.add(key);
        return w.call('lookup', key);
      }),
    );
    const settled = await Promise.allSettled(lookups);
    const computations = (await totalCalls()) - before;
    process.stdout.write(`[coalesce] stress: ${lookups.length} lookups over ${keys.size} keys -> ${computations} computations\n`);
    expect(settled.filter((s) => s.status === 'rejected')).toEqual([]);
    expect(computations).toBe(keys.size);
  });

  it('invalidation during a coalesced computation: waiters get the fresh result', async () => {
    const [a, b, c] = workers;
    await a.call('hold');
    const first = a.call<Entry>('lookup', url('changing'));
    await waitFor(async () => (await a.call<number>('waiting')) === 1, 10_000, 'A computing');
    const waiters = [b.call<Entry>('lookup', url('changing')), c.call<Entry>('lookup', url('changing'))];
    await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [url('changing')]);
    await c.call('invalidate', url('changing'));
    await a.call('release');
    const entries = await Promise.all([first, ...waiters]);
    expect(entries.map((e) => e.definitions.value.version)).toEqual([2, 2, 2]);
    const rows = await db.query<{ v: number }>(
      `SELECT (definitions->'value'->>'version')::int AS v FROM module_cache_entries WHERE url = $1`,
      [url('changing')],
    );
    expect(rows).toEqual([{ v: 2 }]);
  });

  it('the computing process is SIGKILLed mid-computation: another process takes over and every waiter gets the result', async () => {
    const [victim, ...survivors] = workers;
    const before = await totalCalls(survivors);
    const takeoversBefore = (await Promise.all(survivors.map((w) => w.call<{ takeovers: number }>('stats')))).reduce(
      (n, s) => n + s.takeovers,
      0,
    );
    const missesBefore = await Promise.all(survivors.map((w) => w.call<{ misses: number }>('stats')));
    await victim.call('hold');
    void victim.call('lookup', url('victim')).catch(() => undefined);
    await waitFor(async () => (await victim.call<number>('waiting')) === 1, 10_000, 'the victim computing');
    const waiting = survivors.flatMap((w) => Array.from({ length: 10 }, () => w.call<Entry>('lookup', url('victim'))));
    await waitFor(
      async () =>
        (await Promise.all(survivors.map((w) => w.call<{ misses: number }>('stats')))).every((s, i) => s.misses > missesBefore[i].misses),
      10_000,
      'the survivors to miss and wait',
    );
    victim.child.kill('SIGKILL');
    await victim.exited;
    const entries = await Promise.all(waiting);
    const takeovers =
      (await Promise.all(survivors.map((w) => w.call<{ takeovers: number }>('stats')))).reduce((n, s) => n + s.takeovers, 0) -
      takeoversBefore;
    const computations = (await totalCalls(survivors)) - before;
    process.stdout.write(`[coalesce] SIGKILL mid-computation: ${computations} computation(s) by the survivors, ${takeovers} takeover(s)\n`);
    if (computations !== 1) {
      for (const w of survivors)
        process.stdout.write(
          `[debug] ${JSON.stringify(await w.call('stats'))} ${JSON.stringify((await w.call<Array<{ type: string; url?: string }>>('events')).filter((e) => e.url === url('victim')))}\n`,
        );
    }
    expect(entries).toHaveLength(30);
    expect(new Set(entries.map((e) => e.createdAt)).size).toBe(1);
    expect(computations).toBe(1);
    expect(takeovers).toBe(1);
  });
});

describe('with coalesceAcrossProcesses: false', () => {
  it('each process computes on its own (the foundation behaviour)', async () => {
    const solo = await spawnWorkers(2, db.url, (i) => ({
      realms: [REALM],
      coalesceAcrossProcesses: false,
      listener: { applicationName: `mc-solo-${i}` },
    }));
    try {
      await db.query(`INSERT INTO truth (url) VALUES ($1)`, [url('solo')]);
      await Promise.all(solo.map((w) => w.call('hold')));
      const lookups = solo.map((w) => w.call('lookup', url('solo')));
      await waitFor(
        async () => (await Promise.all(solo.map((w) => w.call<number>('waiting')))).every((n) => n === 1),
        10_000,
        'both computing',
      );
      await Promise.all(solo.map((w) => w.call('release')));
      await Promise.all(lookups);
      expect(await totalCalls(solo)).toBe(2);
      expect(await db.query(`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'mc-solo-%-claims'`)).toEqual([]);
    } finally {
      await Promise.all(solo.map((w) => w.stop()));
    }
  }, 60_000);
});
