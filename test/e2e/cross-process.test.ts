import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeInvalidations } from '../../src';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { waitFor } from '../support/wait';
import { spawnWorkers, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

const REALM = 'https://example.test/realm/';
const SECRET = 'cross-process-test-secret';
let db: TestDatabase;
let a: WorkerHandle;
let b: WorkerHandle;

const url = (n: string) => `${REALM}${n}.ts`;
const appName = (i: number) => `mc-xproc-${i}`;

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url, deps) SELECT $1 || 'm' || i || '.ts', '{}' FROM generate_series(0, 20) i`, [REALM]);
  await db.query(`UPDATE truth SET deps = ARRAY[$1 || 'm0.ts'] WHERE url = $1 || 'm1.ts'`, [REALM]);
  [a, b] = await spawnWorkers(2, db.url, (i) => ({
    realms: [REALM],
    signingSecret: SECRET,
    listener: { applicationName: appName(i) },
  }));
}, 120_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await db?.drop();
});

async function warm(worker: WorkerHandle, ...names: string[]): Promise<void> {
  for (const n of names) await worker.call('lookup', url(n));
  for (const n of names) expect(await worker.call('inMemory', url(n))).toBe(true);
}

describe('cross-process invalidation (2 OS processes)', () => {
  it('A.invalidate evicts exactly the invalidated URLs from B (module, consumer), nothing else', async () => {
    await warm(b, 'm0', 'm1', 'm2');
    await b.call('events');
    const invalidated = await a.call<string[]>('invalidate', url('m0'));
    expect(invalidated).toEqual(expect.arrayContaining([url('m0'), url('m1')]));
    await waitFor(
      async () => !(await b.call('inMemory', url('m0'))) && !(await b.call('inMemory', url('m1'))),
      10_000,
      'B to evict m0 and m1',
    );
    expect(await b.call('inMemory', url('m2'))).toBe(true);
    const events = await b.call<Array<{ type: string; urls?: string[]; origin?: string }>>('events');
    const remote = events.filter((e) => e.type === 'remote-invalidated');
    expect(remote.length).toBeGreaterThanOrEqual(1);
    expect(remote.flatMap((e) => e.urls)).toEqual(expect.arrayContaining([url('m0'), url('m1')]));
    expect(remote.flatMap((e) => e.urls)).not.toContain(url('m2'));
  });

  it('clearRealm and clearAll reach the peer', async () => {
    await warm(b, 'm3');
    await a.call('clearRealm', REALM);
    await waitFor(async () => !(await b.call('inMemory', url('m3'))), 10_000, 'B to drop the realm');
    await warm(b, 'm4');
    await a.call('clearAll');
    await waitFor(async () => !(await b.call('inMemory', url('m4'))), 10_000, 'B to drop everything');
  });

  it('a hand-sent pg_notify in the documented format is obeyed', async () => {
    await warm(b, 'm5', 'm6');
    const [payload] = encodeInvalidations({ kind: 'module', realm: REALM, urls: [url('m5')] }, { origin: 'psql', signingSecret: SECRET });
    await db.query(`SELECT pg_notify('module_cache_invalidated', $1)`, [payload]);
    await waitFor(async () => !(await b.call('inMemory', url('m5'))), 10_000, 'B to obey the hand-sent message');
    expect(await b.call('inMemory', url('m6'))).toBe(true);
  });

  it('malformed, oversized, unsigned and forged payloads are counted and ignored', async () => {
    await warm(b, 'm7');
    const before = (await b.call<{ stats: { rejected: number } }>('listenerState')).stats.rejected;
    const unsigned = JSON.stringify({ k: 'module', r: REALM, m: [url('m7')], o: 'x' });
    const forged = JSON.stringify({ k: 'module', r: REALM, m: [url('m7')], o: 'x', s: 'ab'.repeat(32) });
    const bad = ['not json', '{"k":"nope"}', '[]', unsigned, forged, JSON.stringify({ k: 'global', o: 'x', junk: 'x'.repeat(7900) })];
    for (const p of bad) await db.query(`SELECT pg_notify('module_cache_invalidated', $1)`, [p]);
    await waitFor(
      async () => (await b.call<{ stats: { rejected: number } }>('listenerState')).stats.rejected - before === bad.length,
      10_000,
      'rejections',
    );
    expect(await b.call('inMemory', url('m7'))).toBe(true);
    expect((await b.call<{ state: string }>('listenerState')).state).toBe('listening');
  });

  it("B's listener backend killed: B reconnects, resyncs, and later invalidations are delivered", async () => {
    await warm(b, 'm8', 'm9');
    // A heartbeat: B has applied everything so far (the earlier tests' invalidations), so the replay starts here.
    expect(await b.call('selfProbe')).toBe(true);
    await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [appName(1)]);
    await waitFor(
      async () => (await b.call<{ stats: { reconnects: number } }>('listenerState')).stats.reconnects >= 1,
      15_000,
      'reconnect',
    );
    await waitFor(async () => (await b.call<{ state: string }>('listenerState')).state === 'listening', 15_000, 'listening again');
    // Nothing was invalidated while B was away: its replay of the fence log kept its memory.
    const seen: Array<{ type: string; mode?: string }> = [];
    await waitFor(
      async () => (seen.push(...(await b.call<Array<{ type: string; mode?: string }>>('events'))), seen.some((e) => e.type === 'resync')),
      15_000,
      "B's resync",
    );
    expect(seen.filter((e) => e.type === 'resync')).toEqual([expect.objectContaining({ mode: 'targeted', rows: 0, evicted: 0 })]);
    expect(await b.call('inMemory', url('m8'))).toBe(true);
    await warm(b, 'm9');
    await a.call('invalidate', url('m9'));
    await waitFor(async () => !(await b.call('inMemory', url('m9'))), 10_000, 'delivery after reconnect');
  });

  it("B's stale computation is not persisted even when A's notification reaches B late (listener stalled)", async () => {
    await db.query(`UPDATE truth SET version = 1 WHERE url = $1`, [url('m10')]);
    await b.call('hold');
    const pending = b.call<{ definitions: { value: { version: number } } }>('lookup', url('m10'));
    await waitFor(async () => (await b.call<number>('waiting')) === 1, 10_000, 'B computing');
    // Stall B's listener: hold its backend on a lock-free but never-ending wait is not possible for a
    // LISTEN connection, so suspend the backend process itself.
    const [{ pid }] = await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = $1`, [appName(1)]);
    process.kill(pid, 'SIGSTOP');
    try {
      await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [url('m10')]);
      await a.call('invalidate', url('m10'));
      await b.call('release');
      const entry = await pending;
      expect(entry.definitions.value.version).toBe(2);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const rows = await db.query<{ v: number }>(
      `SELECT (definitions->'value'->>'version')::int AS v FROM module_cache_entries WHERE url = $1`,
      [url('m10')],
    );
    expect(rows).toEqual([{ v: 2 }]);
  });
});
