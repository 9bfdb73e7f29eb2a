import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleCacheEvent } from '../../src';
import { migrate } from '../support/app';
import { claimHeld, databaseClock, waitForClaimAttempts } from '../support/claims';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { waitFor, within } from '../support/wait';
import { spawnWorkers, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

const REALM = 'https://example.test/realm/';
/**
 * Waiters re-try the claim this rarely in the tests that expect to be woken: a waiter that missed
 * its wake-up would sit out the test's timeout instead of passing by taking over.
 */
const NO_TAKEOVER_CHECK_MS = 60_000;
let db: TestDatabase;
let workers: WorkerHandle[];
/** Every worker any test spawned, so that afterEach can open their gates whatever happened. */
const spawned: WorkerHandle[] = [];
const url = (n: string) => `${REALM}${n}.ts`;
const applicationName = (label: string, i: number) => `mc-coalesce-${label}-${i}`;

interface Entry {
  definitions: { value: { version: number } };
  createdAt: string;
}

type Coalesced = Extract<ModuleCacheEvent, { type: 'coalesced' }>;

const alive = (ws: WorkerHandle[]) => ws.filter((w) => w.child.exitCode === null && w.child.signalCode === null);

async function totalCalls(ws = workers): Promise<number> {
  return (await Promise.all(alive(ws).map((w) => w.call<number>('sourceCalls')))).reduce((a, b) => a + b, 0);
}

/** Invalidation notifications the worker has applied so far. */
async function received(w: WorkerHandle): Promise<number> {
  return (await w.call<{ notifications: { received: number } }>('stats')).notifications.received;
}

async function totalStat(ws: WorkerHandle[], read: (s: { takeovers: number; coalescedWaits: number }) => number): Promise<number> {
  return (await Promise.all(alive(ws).map((w) => w.call<{ takeovers: number; coalescedWaits: number }>('stats')))).reduce(
    (n, s) => n + read(s),
    0,
  );
}

/** The events the workers saw since they were last asked (hits and misses are not recorded). */
async function drainEvents(ws: WorkerHandle[]): Promise<ModuleCacheEvent[]> {
  return (await Promise.all(alive(ws).map((w) => w.call<ModuleCacheEvent[]>('events')))).flat();
}

const coalescedFor = (events: ModuleCacheEvent[], u: string) => events.filter((e): e is Coalesced => e.type === 'coalesced' && e.url === u);

async function spawn(label: string, count: number, takeoverCheckMs: number): Promise<WorkerHandle[]> {
  const ws = await spawnWorkers(count, db.url, (i) => ({
    realms: [REALM],
    coalesceTakeoverCheckMs: takeoverCheckMs,
    listener: { applicationName: applicationName(label, i) },
  }));
  spawned.push(...ws);
  return ws;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url) SELECT $1 || 'k' || i || '.ts' FROM generate_series(0, 99) i`, [REALM]);
  await db.query(`INSERT INTO truth (url) VALUES ($1), ($2), ($3), ($4)`, [url('fresh'), url('victim'), url('changing'), url('retried')]);
  workers = await spawn('main', 4, NO_TAKEOVER_CHECK_MS);
}, 120_000);

// A failed assertion must not leave a computation held at a gate for the next test to trip over.
afterEach(async () => {
  await Promise.all(alive(spawned).map((w) => w.call('release')));
});

afterAll(async () => {
  await Promise.all(spawned.map((w) => w.stop()));
  await db.drop();
});

describe('cross-process populate coalescing (4 OS processes)', () => {
  it('4 processes x 50 concurrent lookups of one fresh key: exactly 1 computation, all 200 callers get the same entry, every waiter woken', async () => {
    const names = workers.map((_, i) => applicationName('main', i));
    await drainEvents(workers);
    const before = await totalCalls();
    const since = await databaseClock(db);
    await Promise.all(workers.map((w) => w.call('hold')));
    const results = workers.flatMap((w) => Array.from({ length: 50 }, () => w.call<Entry>('lookup', url('fresh'))));
    await waitFor(
      async () => (await Promise.all(workers.map((w) => w.call<number>('waiting')))).reduce((a, b) => a + b) === 1,
      10_000,
      'one computation',
    );
    await waitFor(() => claimHeld(db), 5000, 'the claim');
    // The claimant holds its claim until released, so every other process's attempt failed: all
    // three are waiting to be woken (a process that claimed after the release would find the row
    // without a wake-up, and prove nothing about wake-ups).
    await waitForClaimAttempts(db, names, since, 'every process to try the claim');
    await Promise.all(workers.map((w) => w.call('release')));
    const entries = await within(Promise.all(results), 20_000, 'the waiters (were they woken?)');
    const computations = (await totalCalls()) - before;
    const coalesced = coalescedFor(await drainEvents(workers), url('fresh'));
    process.stdout.write(
      `[coalesce] 4 processes x 50 lookups: ${computations} computation(s), ${entries.length} callers, ${coalesced.length} process-level waits\n`,
    );
    // Without coalescing each process computes once (4); a wake-up that never came would time the test out.
    expect(computations).toBe(1);
    expect(entries).toHaveLength(200);
    expect(new Set(entries.map((e) => JSON.stringify([e.definitions, e.createdAt]))).size).toBe(1);
    expect(coalesced).toHaveLength(3);
    expect(coalesced.map((e) => e.woken)).toEqual([true, true, true]);
  });

  it('many keys with random overlaps: computations == distinct keys, no waiter times out or takes over', async () => {
    const before = await totalCalls();
    const takeoversBefore = await totalStat(workers, (s) => s.takeovers);
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
    // Every claimant persisted its row: waiters were woken to it, none had to claim after a peer let go without one.
    expect((await totalStat(workers, (s) => s.takeovers)) - takeoversBefore).toBe(0);
  });

  it('invalidation during a coalesced computation: waiters get the fresh result, woken by each claimant', async () => {
    const [a, b, c] = workers;
    const racers = [a, b, c];
    const names = [0, 1, 2].map((i) => applicationName('main', i));
    const changing = url('changing');
    await drainEvents(workers);
    const since = await databaseClock(db);
    await a.call('hold');
    const first = a.call<Entry>('lookup', changing);
    await waitFor(async () => (await a.call<number>('waiting')) === 1, 10_000, 'A computing');
    const waiters = [b.call<Entry>('lookup', changing), c.call<Entry>('lookup', changing)];
    await waitForClaimAttempts(db, names.slice(1), since, 'B and C to wait for A');
    await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [changing]);
    const heard = await Promise.all([a, b].map(received));
    await c.call('invalidate', changing);
    // A and B drop their flights (their snapshots move) when they hear of it: wait for that, so
    // that which of them may compute does not depend on how fast a notification travels.
    await waitFor(
      async () => (await Promise.all([a, b].map(received))).every((n, i) => n > heard[i]),
      10_000,
      'A and B to hear the invalidation',
    );

    // A's result is discarded (stale) and its claim let go without a row: A (retrying), B and C
    // race for the claim again. B and C were invalidated while they waited: whichever of them wins
    // lets go at once and tries again with a fresh snapshot, never computing from the stale one
    // (it would be discarded too, a round that ends without a row and with an extra
    // computation). Hold whichever computes (a gate for this URL only: A's first computation
    // waits at the gate for every URL), until the other two have lost.
    await Promise.all(racers.map((w) => w.call('hold', changing)));
    const again = await databaseClock(db);
    await a.call('release', '*');
    await waitFor(
      async () => (await Promise.all(racers.map((w) => w.call<number>('waiting', changing)))).reduce((x, y) => x + y) === 1,
      10_000,
      'the second claimant computing',
    );
    await waitForClaimAttempts(db, names, again, 'the other two to try the claim again');
    await Promise.all(racers.map((w) => w.call('release')));

    const entries = await within(Promise.all([first, ...waiters]), 20_000, 'the waiters (were they woken?)');
    expect(entries.map((e) => e.definitions.value.version)).toEqual([2, 2, 2]);
    const rows = await db.query<{ v: number }>(
      `SELECT (definitions->'value'->>'version')::int AS v FROM module_cache_entries WHERE url = $1`,
      [changing],
    );
    expect(rows).toEqual([{ v: 2 }]);
    // The first round ended without a row (no coalesced event); the two losers of the second were woken to its row.
    const events = await Promise.all(workers.map((w) => w.call<ModuleCacheEvent[]>('events')));
    const forChanging = events.map((es, i) => es.filter((e) => 'url' in e && e.url === changing).map((e) => ({ worker: i, ...e })));
    expect(
      coalescedFor(events.flat(), changing).map((e) => e.woken),
      `events for ${changing}: ${JSON.stringify(forChanging)}`,
    ).toEqual([true, true]);
  });

  it("a retry after a discard joins its process's newer flight; the peer waits: 2 source calls in all, never 2 at once", async () => {
    const [a, b] = workers;
    const retried = url('retried');
    const before = await totalCalls();
    const since = await databaseClock(db);
    await a.call('hold');
    const first = a.call<Entry>('lookup', retried);
    await waitFor(async () => (await a.call<number>('waiting')) === 1, 10_000, 'A computing');
    const peer = b.call<Entry>('lookup', retried);
    await waitForClaimAttempts(db, [applicationName('main', 1)], since, 'B to wait for A');
    await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [retried]);
    // A's first computation is doomed; A's next lookup starts a newer flight of the key, which
    // either parks on A's own claim or (a re-entrant claim) computes beside the doomed one.
    await a.call('invalidate', retried);
    const newer = a.call<Entry>('lookup', retried);
    await waitFor(
      async () => (await a.call<number>('waiting')) === 2 || (await a.call<number>('parked')) === 1,
      10_000,
      "A's newer flight at the claim",
    );
    await a.call('release');
    const entries = await within(Promise.all([first, newer, peer]), 20_000, 'every caller');
    const computations = (await totalCalls()) - before;
    process.stdout.write(`[coalesce] discard + newer flight + a waiting peer: ${computations} source call(s)\n`);
    expect(entries.map((e) => e.definitions.value.version)).toEqual([2, 2, 2]);
    // The doomed one, and one more that all three callers share; A's newer flight waited for the
    // doomed one's claim instead of computing beside it (a re-entrant claim), which left the
    // retry a third computation whenever it started before the newer one had persisted.
    expect(computations).toBe(2);
    expect(await a.call<number>('maxConcurrent', retried)).toBe(1);
  });
});

describe('takeover from a dead claimant (3 OS processes, claim re-tried every 200 ms)', () => {
  let trio: WorkerHandle[];

  beforeAll(async () => {
    trio = await spawn('takeover', 3, 200);
  }, 120_000);

  it('the computing process is SIGKILLed mid-computation: another process takes over and every waiter gets the result', async () => {
    const [victim, ...survivors] = trio;
    const names = [1, 2].map((i) => applicationName('takeover', i));
    const before = await totalCalls(survivors);
    const takeoversBefore = await totalStat(survivors, (s) => s.takeovers);
    await victim.call('hold');
    void victim.call('lookup', url('victim')).catch(() => undefined);
    await waitFor(async () => (await victim.call<number>('waiting')) === 1, 10_000, 'the victim computing');
    await waitFor(() => claimHeld(db), 5000, "the victim's claim");
    const since = await databaseClock(db);
    const waiting = survivors.flatMap((w) => Array.from({ length: 10 }, () => w.call<Entry>('lookup', url('victim'))));
    // Both survivors tried the claim while the victim held it: neither can win it before the kill,
    // so the computation after the kill is a takeover by a process that was waiting.
    await waitForClaimAttempts(db, names, since, 'the survivors to try the claim and wait');
    victim.child.kill('SIGKILL');
    await victim.exited;
    const entries = await Promise.all(waiting);
    const takeovers = (await totalStat(survivors, (s) => s.takeovers)) - takeoversBefore;
    const computations = (await totalCalls(survivors)) - before;
    process.stdout.write(`[coalesce] SIGKILL mid-computation: ${computations} computation(s) by the survivors, ${takeovers} takeover(s)\n`);
    expect(entries).toHaveLength(20);
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
    spawned.push(...solo);
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
