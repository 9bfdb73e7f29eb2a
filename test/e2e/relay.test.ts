import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleCacheHealthReport } from '../../src';
import { migrate } from '../support/app';
import { databaseClock, waitForClaimAttempts } from '../support/claims';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { waitFor } from '../support/wait';
import { spawnCluster, spawnWorker, TRUTH_SQL, type ClusterHandle, type WorkerHandle } from '../processes/harness';

/**
 * Cluster relay mode, with a real node:cluster primary and its workers: the primary holds the
 * host's only dedicated connection and relays it; the fence, the heartbeat and coalescing work as
 * before, through it.
 */
const REALM = 'https://example.test/relay/';
const RELAY = 'mc-relay-test';
const url = (n: string) => `${REALM}${n}.ts`;

let db: TestDatabase;
let host: ClusterHandle;
let outsider: WorkerHandle;

interface Entry {
  definitions: { value: { version: number } };
}
const version = async (w: WorkerHandle, n: string) => (await w.call<Entry>('lookup', url(n))).definitions.value.version;

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url) SELECT $1 || 'm' || i || '.ts' FROM generate_series(0, 49) i`, [REALM]);
  host = await spawnCluster(
    3,
    db.url,
    { realms: [REALM], coalesceTakeoverCheckMs: 60_000, listener: { relay: true, heartbeat: { intervalMs: 1_000, timeoutMs: 2_000 } } },
    RELAY,
  );
  // Another host (a process with its own connection) shares the database.
  outsider = await spawnWorker('outsider', db.url, {
    realms: [REALM],
    coalesceTakeoverCheckMs: 60_000,
    listener: { applicationName: 'mc-relay-outsider' },
  });
  await waitFor(
    async () => (await Promise.all(host.workers.map((w) => w.call<ModuleCacheHealthReport>('health')))).every((h) => h.healthy),
    20_000,
    'healthy workers',
  );
}, 180_000);

afterAll(async () => {
  await Promise.all([host?.stop(), outsider?.stop()]);
  await db?.drop();
});

describe('cluster relay mode (a node:cluster primary and 3 workers)', () => {
  it('holds one dedicated connection for the whole host; heartbeats prove delivery through the relay', async () => {
    const named = await db.query<{ application_name: string }>(
      `SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'mc-relay%' ORDER BY 1`,
      [db.name],
    );
    expect(named.map((r) => r.application_name)).toEqual(['mc-relay-outsider', RELAY]);
    for (const w of host.workers) expect(await w.call('listenerState')).toMatchObject({ state: 'listening', probe: { ok: true } });
  });

  it('invalidations reach every worker, from a worker of the host and from another host', async () => {
    const [a, b, c] = host.workers;
    for (const w of host.workers) expect(await version(w, 'm1')).toBe(1);
    await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [url('m1')]);
    await a.call('invalidate', url('m1'));
    await waitFor(async () => !(await b.call('inMemory', url('m1'))) && !(await c.call('inMemory', url('m1'))), 10_000, 'b and c evicted');
    expect(await version(c, 'm1')).toBe(2);
    await version(b, 'm2');
    await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [url('m2')]);
    await outsider.call('invalidate', url('m2'));
    await waitFor(async () => (await version(b, 'm2')) === 2, 10_000, 'the other host’s invalidation');
  });

  it('coalesces across the workers of the host (claims arbitrated by the primary) and across hosts', async () => {
    const computes = async () =>
      (await Promise.all([...host.workers, outsider].map((w) => w.call<{ computes: number }>('stats')))).reduce(
        (n, s) => n + s.computes,
        0,
      );
    const before = await computes();
    for (const w of host.workers) await w.call('hold', url('m3'));
    await outsider.call('hold', url('m3'));
    const lookups = [...host.workers, outsider].map((w) => w.call<Entry>('lookup', url('m3')));
    await waitFor(
      async () =>
        (await Promise.all([...host.workers, outsider].map((w) => w.call<number>('waiting', url('m3'))))).reduce((x, y) => x + y) === 1,
      10_000,
      'one computation',
    );
    for (const w of [...host.workers, outsider]) await w.call('release', url('m3'));
    await Promise.all(lookups);
    expect((await computes()) - before).toBe(1);
    // The primary's session lock is re-entrant: a claim taken twice for two workers would outlive
    // the computation and keep every other host from claiming the key.
    const held = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND a.application_name = $1 AND a.datname = $2`,
      [RELAY, db.name],
    );
    expect(held[0].n).toBe(0);
  });

  it('claims raced by the workers of the host for the same keys leave no lock behind', async () => {
    // Every worker misses the same thirty keys at once, so their claims reach the primary together.
    const keys = Array.from({ length: 30 }, (_, i) => url(`m${20 + i}`));
    await Promise.all(host.workers.map((w) => w.call('lookupAll', keys)));
    const held = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND a.application_name = $1 AND a.datname = $2`,
      [RELAY, db.name],
    );
    expect(held[0].n).toBe(0);
  });

  it('a worker killed while it holds a claim: the relay lets go of it and wakes the waiters, who take over at once', async () => {
    const [victim] = host.workers;
    await victim.call('hold', url('m4'));
    const doomed = victim.call('lookup', url('m4')).catch(() => undefined);
    await waitFor(async () => (await victim.call<number>('waiting', url('m4'))) === 1, 10_000, 'the victim computing');
    // The other host waits for the victim's claim: its own claim attempt has failed.
    const since = await databaseClock(db);
    const waiting = outsider.call<Entry>('lookup', url('m4'));
    await waitForClaimAttempts(db, ['mc-relay-outsider'], since, 'the other host to wait for the claim');
    process.kill(victim.pid, 'SIGKILL');
    void doomed;
    // The takeover check runs every 60 s: only the relay's wake-up can make this prompt.
    expect((await waiting).definitions.value.version).toBe(1);
    expect((await outsider.call<{ takeovers: number }>('stats')).takeovers).toBe(1);
  });

  it('its connection killed: every worker resyncs, and later invalidations are delivered', async () => {
    const [, b, c] = host.workers;
    await version(c, 'm5');
    expect(await c.call('inMemory', url('m5'))).toBe(true);
    // A heartbeat: c has applied everything so far, so its replay starts here.
    expect(await c.call('selfProbe')).toBe(true);
    await c.call('events'); // from here on
    await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = $2`, [RELAY, db.name]);
    const resyncs: Array<{ type: string }> = [];
    await waitFor(
      async () => (
        resyncs.push(...(await c.call<Array<{ type: string }>>('events')).filter((e) => e.type === 'resync')),
        resyncs.length > 0
      ),
      10_000,
      'the worker resynced',
    );
    // Nothing was invalidated meanwhile: the replay of the fence log kept its memory.
    expect(resyncs).toEqual([expect.objectContaining({ mode: 'targeted', rows: 0, evicted: 0 })]);
    expect(await c.call('inMemory', url('m5'))).toBe(true);
    await waitFor(async () => (await b.call<{ state: string }>('listenerState')).state === 'listening', 10_000, 'listening again');
    await version(b, 'm6');
    await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [url('m6')]);
    await outsider.call('invalidate', url('m6'));
    await waitFor(async () => (await version(b, 'm6')) === 2, 10_000, 'delivery after the reconnect');
  });
});
