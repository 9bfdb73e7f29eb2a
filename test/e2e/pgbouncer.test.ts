import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleCacheOptions } from '../../src';
import { migrate } from '../support/app';
import { databaseClock, waitForClaimAttempts } from '../support/claims';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { findPgBouncer, startPgBouncer, type PgBouncer } from '../support/faults/pgbouncer';
import { waitFor } from '../support/wait';
import { spawnWorker, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * The deployment the `preparedStatements` and `listener.connection` options exist for: every
 * worker's DataSource pool goes through a PgBouncer in transaction pooling mode (few server
 * connections, shared by all clients), while the listener connects to the server directly.
 */
const REALM = 'https://example.test/realm/';
const url = (n: string) => `${REALM}${n}.ts`;
const appName = (label: string) => `mc-pgbouncer-${label}`;

const found = findPgBouncer();
if (!found) {
  process.stdout.write(
    '[pgbouncer] SKIPPED test/e2e/pgbouncer.test.ts: no pgbouncer binary (PATH, /usr/sbin); install it with `apt-get install pgbouncer`\n',
  );
}

interface Entry {
  definitions: { value: { version: number } };
  createdAt: string;
}
interface ListenerState {
  state: string;
  probe: { ok?: boolean; reason?: string };
}
interface Health {
  healthy: boolean;
  problems: string[];
}

let db: TestDatabase;
let bouncer: PgBouncer;
let a: WorkerHandle;
let b: WorkerHandle;
let c: WorkerHandle;
const spawned: WorkerHandle[] = [];

/** A worker whose pool goes through PgBouncer; its listener goes to `listenerUrl` (the server, unless a test says otherwise). */
async function spawnBehindBouncer(label: string, options: Partial<ModuleCacheOptions> = {}, listenerUrl = db.url) {
  const worker = await spawnWorker(label, bouncer.url, {
    realms: [REALM],
    preparedStatements: false,
    // Waiters must be woken (the NOTIFY path), not find the row by retrying the claim.
    coalesceTakeoverCheckMs: 60_000,
    ...options,
    listener: { connection: { connectionString: listenerUrl }, applicationName: appName(label), ...(options.listener || {}) },
  });
  spawned.push(worker);
  return worker;
}

const sourceCalls = async (...ws: WorkerHandle[]) =>
  (await Promise.all(ws.map((w) => w.call<number>('sourceCalls')))).reduce((x, y) => x + y);

describe.skipIf(!found)(`the pool behind PgBouncer ${found?.version ?? ''} in transaction pooling mode (3 OS processes)`, () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    await migrate(db.url);
    await db.query(TRUTH_SQL);
    await db.query(`INSERT INTO truth (url) SELECT $1 || 'm' || i || '.ts' FROM generate_series(0, 9) i`, [REALM]);
    bouncer = (await startPgBouncer(db.url))!;
    process.stdout.write(`[pgbouncer] PgBouncer ${bouncer.version} (transaction pooling, 5 server connections) at ${bouncer.url}\n`);
    [a, b, c] = await Promise.all(['a', 'b', 'c'].map((label) => spawnBehindBouncer(label)));
  }, 120_000);

  afterAll(async () => {
    // A failed assertion must not leave a computation held at a gate (stop() would wait for it).
    await Promise.all(spawned.map((w) => w.call('release').catch(() => undefined)));
    await Promise.all(spawned.map((w) => w.stop()));
    await bouncer?.stop();
    await db?.drop();
  });

  it('the heartbeat through the pool reaches the direct listeners: every process is healthy', async () => {
    for (const w of [a, b, c]) {
      const listener = await w.call<ListenerState>('listenerState');
      expect(listener.state).toBe('listening');
      expect(listener.probe.ok).toBe(true);
      expect(await w.call<Health>('health')).toMatchObject({ healthy: true, problems: [] });
    }
  });

  it('a lookup computes once, is served from memory, and from the table by the peers', async () => {
    const first = await a.call<Entry>('lookup', url('m0'));
    expect(first.definitions.value.version).toBe(1);
    expect(await a.call<Entry>('lookup', url('m0'))).toEqual(first);
    expect(await a.call('inMemory', url('m0'))).toBe(true);
    for (const w of [b, c]) expect(await w.call<Entry>('lookup', url('m0'))).toEqual(first);
    expect(await sourceCalls(a, b, c)).toBe(1);
    const [sa, sb] = await Promise.all([a, b].map((w) => w.call<{ hits: { memory: number; table: number } }>('stats')));
    expect(sa.hits.memory).toBeGreaterThanOrEqual(1);
    expect(sb.hits.table).toBeGreaterThanOrEqual(1);
    expect(await db.query(`SELECT 1 FROM module_cache_entries WHERE url = $1`, [url('m0')])).toHaveLength(1);
  });

  it('invalidate in one process evicts in the others, which then serve the new version', async () => {
    for (const w of [a, b, c]) await w.call('lookup', url('m1'));
    for (const w of [b, c]) expect(await w.call('inMemory', url('m1'))).toBe(true);
    await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [url('m1')]);
    await a.call('invalidate', url('m1'));
    await waitFor(
      async () => !(await b.call('inMemory', url('m1'))) && !(await c.call('inMemory', url('m1'))),
      10_000,
      'B and C to evict m1',
    );
    for (const w of [b, c, a]) expect((await w.call<Entry>('lookup', url('m1'))).definitions.value.version).toBe(2);
  });

  it('concurrent lookups of a fresh key in two processes: one computation, the other process is woken to its row', async () => {
    const before = await sourceCalls(a, b);
    const since = await databaseClock(db);
    await Promise.all([a, b].map((w) => w.call('hold')));
    const results = [a, b].flatMap((w) => Array.from({ length: 5 }, () => w.call<Entry>('lookup', url('m2'))));
    await waitFor(
      async () => (await Promise.all([a, b].map((w) => w.call<number>('waiting')))).reduce((x, y) => x + y) === 1,
      10_000,
      'one computation',
    );
    // Both processes tried the claim (on their direct connections): the loser waits for the wake-up.
    await waitForClaimAttempts(db, [appName('a'), appName('b')], since, 'both processes to try the claim');
    await Promise.all([a, b].map((w) => w.call('release')));
    const entries = await Promise.all(results);
    expect((await sourceCalls(a, b)) - before).toBe(1);
    // The same row everywhere (key order aside: jsonb reorders the computing process's diagnostics).
    for (const e of entries) expect(e).toEqual(entries[0]);
    const waits = await Promise.all([a, b].map((w) => w.call<{ coalescedWaits: number }>('stats')));
    expect(waits.reduce((n, s) => n + s.coalescedWaits, 0)).toBeGreaterThanOrEqual(1);
  });

  it('a listener pointed at PgBouncer by mistake fails its heartbeat probe, and health says why', async () => {
    // LISTEN through PgBouncer registers on a server connection that goes back to the pool: the
    // probe NOTIFYed through the pool reaches that connection while no client is linked to it,
    // and PgBouncer discards it ("got packet 'A' from server when not linked").
    const stray = await spawnBehindBouncer('stray', { listener: { heartbeat: { intervalMs: 500, timeoutMs: 1_000 } } }, bouncer.url);
    try {
      const listener = await waitFor(
        async () => {
          const s = await stray.call<ListenerState>('listenerState');
          return s.probe.ok === false ? s : undefined;
        },
        15_000,
        'the stray listener to fail its probe',
      );
      expect(listener.probe.reason).toMatch(/did not arrive on the listener/);
      expect(listener.probe.reason).toMatch(/transaction-pooling proxy such as PgBouncer/);
      const health = await stray.call<Health>('health');
      expect(health.healthy).toBe(false);
      expect(health.problems.join('\n')).toMatch(/self-probe failed: .*PgBouncer/);
      // The healthy processes are not affected.
      expect(await a.call<Health>('health')).toMatchObject({ healthy: true });
    } finally {
      await stray.stop();
    }
  });

  it('with preparedStatements: true, lookups fail behind PgBouncer (why the option exists)', async () => {
    const prepared = await spawnBehindBouncer('prepared', { preparedStatements: true });
    const failures: string[] = [];
    try {
      // Named statements live on server connections, but pg remembers them per client: a client's
      // Parse may land where another client's statement of that name already is ("already exists"),
      // and its later Binds on another server connection ("does not exist"). Concurrent lookups of
      // fresh keys spread the pool's clients over the server connections.
      let round = 0;
      await waitFor(
        async () => {
          round++;
          const settled = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => prepared.call('lookup', url(`p${round}-${i}`))));
          for (const s of settled) if (s.status === 'rejected') failures.push((s.reason as Error).message);
          return failures.length > 0;
        },
        30_000,
        'a lookup to fail with named prepared statements',
        0,
      );
    } finally {
      await prepared.stop();
    }
    process.stdout.write(`[pgbouncer] preparedStatements: true: ${failures.length} lookup(s) failed, e.g. ${failures[0]}\n`);
    expect(failures.length).toBeGreaterThan(0);
  });
});
