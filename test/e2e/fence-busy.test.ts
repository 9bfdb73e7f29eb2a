import { createHash } from 'node:crypto';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { waitFor } from '../support/wait';
import { spawnWorkers, TRUTH_SQL, type WorkerHandle } from '../processes/harness';
import type { ModuleCacheHealthReport, ModuleCacheStats } from '../../src';

/**
 * One invalidation stuck for 20 s inside its transaction (its DELETE waits for a row lock held
 * elsewhere) must not stall the cluster: another process's cold lookups answer and its
 * invalidations settle, persisted where they touch nothing the stuck one holds, bounded by
 * fenceWaitMs (served unpersisted / E_FENCE_BUSY) where they do. Nothing is stale afterwards.
 */
const REALM = 'https://example.test/busy/';
const STUCK_MS = 20_000;
const url = (n: string) => `${REALM}${n}.ts`;
/** The fence partition of a module (the migration's module_cache_partition(md5(alias))). */
const partition = (n: string) => createHash('md5').update(`${REALM}${n}`).digest()[0] & 63;

let db: TestDatabase;
let a: WorkerHandle;
let b: WorkerHandle;

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url, deps) VALUES ($1, '{}'), ($2, ARRAY[$1])`, [url('stuck0'), url('stuck1')]);
  [a, b] = await spawnWorkers(2, db.url, () => ({ realms: [REALM], fenceWaitMs: 2_000 }));
}, 120_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await db?.drop();
});

async function timed<T>(work: Promise<T>): Promise<{ ms: number; result?: T; error?: Error & { code?: string } }> {
  const started = performance.now();
  try {
    const result = await work;
    return { ms: performance.now() - started, result };
  } catch (error) {
    return { ms: performance.now() - started, error: error as Error & { code?: string } };
  }
}

describe('one invalidation stuck for 20 s', () => {
  it('leaves unrelated misses and invalidations in other processes answered, bounded where they collide, nothing stale', async () => {
    const held = new Set([partition('stuck0'), partition('stuck1')]);
    const names = Array.from({ length: 400 }, (_, i) => `m${i}`);
    const free = names.filter((n) => !held.has(partition(n))).slice(0, 3);
    const colliding = names.filter((n) => held.has(partition(n))).slice(0, 2);
    await db.query(`INSERT INTO truth (url, deps) SELECT unnest($1::text[]), '{}'`, [[...free, ...colliding].map(url)]);
    await a.call('lookup', url('stuck1'));
    await b.call('lookup', url(free[1]));
    await b.call('lookup', url(colliding[1]));

    const gate = new Client({ connectionString: db.url });
    await gate.connect();
    try {
      await gate.query('BEGIN');
      await gate.query(`SELECT 1 FROM module_cache_entries WHERE url = $1 FOR UPDATE`, [url('stuck1')]);
      await db.query(`UPDATE truth SET version = version + 1 WHERE url = $1`, [url('stuck0')]);
      const stuckSince = performance.now();
      const stuck = timed(a.call<string[]>('invalidate', url('stuck0')));
      await waitFor(
        async () =>
          (await db.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%module_cache_invalidate_many%'`))
            .length > 0,
        10_000,
        'the invalidation to wait for the row lock',
      );

      // Unrelated modules (other partitions): answered and persisted, invalidated, as if nothing were stuck.
      const cold = await timed(b.call('lookup', url(free[0])));
      const invalidated = await timed(b.call<string[]>('invalidate', url(free[1])));
      // Modules sharing a partition with the stuck fan-out: bounded by fenceWaitMs.
      const coldColliding = await timed(b.call('lookup', url(colliding[0])));
      const invalidatedColliding = await timed(b.call<string[]>('invalidate', url(colliding[1])));
      const health = await b.call<ModuleCacheHealthReport>('health');
      const stats = await b.call<ModuleCacheStats>('stats');
      console.log(
        `[fence-busy] while one invalidation was stuck: unrelated cold lookup ${cold.ms.toFixed(0)} ms, unrelated invalidate ` +
          `${invalidated.ms.toFixed(0)} ms; same partition: cold lookup ${coldColliding.ms.toFixed(0)} ms (unpersisted), invalidate ` +
          `${invalidatedColliding.ms.toFixed(0)} ms (${invalidatedColliding.error?.code ?? 'resolved'})`,
      );
      expect(cold.error).toBeUndefined();
      expect(cold.ms).toBeLessThan(3_000);
      expect(invalidated.result).toContain(url(free[1]));
      expect(invalidated.ms).toBeLessThan(10_000);
      expect(coldColliding.error).toBeUndefined();
      expect(coldColliding.ms).toBeLessThan(3_000);
      expect(invalidatedColliding.error?.code).toBe('E_FENCE_BUSY');
      expect(invalidatedColliding.ms).toBeLessThan(10_000);
      expect(stats.fenceBusy).toEqual({ persists: 1, invalidations: 1 });
      expect(stats.persisted).toBeGreaterThanOrEqual(3);
      expect(health).toMatchObject({ healthy: true, degraded: true });
      const rows = await db.query<{ url: string }>(`SELECT url FROM module_cache_entries WHERE url = ANY($1) ORDER BY url`, [
        [url(free[0]), url(colliding[0])],
      ]);
      expect(rows.map((r) => r.url)).toEqual([url(free[0])]);

      await new Promise((r) => setTimeout(r, Math.max(0, STUCK_MS - (performance.now() - stuckSince))));
      await gate.query('COMMIT');
      const done = await stuck;
      expect(done.error).toBeUndefined();
      expect(done.result).toEqual(expect.arrayContaining([url('stuck0'), url('stuck1')]));
    } finally {
      await gate.end();
    }
    // Nothing stale: both processes now see stuck0's new version through stuck1.
    for (const w of [a, b]) {
      await waitFor(
        async () => {
          const entry = await w.call<{ definitions: { value: { depVersions: Record<string, number> } } }>('lookup', url('stuck1'));
          return entry.definitions.value.depVersions[url('stuck0')] === 2;
        },
        10_000,
        `${w.name} to see stuck0 v2 through stuck1`,
      );
    }
    const [{ n }] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM module_cache_entries WHERE url = $1`, [url('stuck1')]);
    expect(n).toBe(1);
  }, 90_000);
});
