import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleCacheEvent, ModuleCacheStats } from '../../src';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { waitFor } from '../support/wait';
import { spawnWorker, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * `consistency: 'strong'` together with the options it must work with: signed payloads (the sync
 * marker signed too), realms registered at runtime (none at start), coalescing across processes,
 * and a dependency graph (the fan-out reaches a consumer). Three real processes.
 */
const REALM = 'https://example.test/strong-options/';
const url = (n: string) => `${REALM}${n}.ts`;

interface Entry {
  definitions: { value: { version: number; depVersions: Record<string, number> } };
}

type Stats = Pick<ModuleCacheStats, 'computes' | 'notifications'>;

let db: TestDatabase;
const workers: WorkerHandle[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url) VALUES ($1), ($2)`, [url('dep'), url('fresh')]);
  await db.query(`INSERT INTO truth (url, deps) VALUES ($1, $2)`, [url('consumer'), [url('dep')]]);
  for (let i = 0; i < 3; i++) {
    workers.push(
      await spawnWorker(`s${i}`, db.url, {
        consistency: 'strong',
        signingSecret: 'a-shared-signing-secret',
        leaseMs: 6_000,
        listener: { applicationName: `mc-strong-options-${i}`, heartbeat: { intervalMs: 1_000, timeoutMs: 1_000 } },
      }),
    );
  }
  await Promise.all(workers.map((w) => w.call('registerRealm', REALM)));
  await waitFor(async () => (await db.query(`SELECT 1 FROM module_cache_peers`)).length === 3, 30_000, 'three members');
}, 120_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await db?.drop();
});

describe("consistency: 'strong' with signing, runtime realms, coalescing and a graph", () => {
  it('one computation for concurrent cold lookups; invalidate() resolves acknowledged by both peers, which then serve the new version', async () => {
    const cold = await Promise.all(workers.map((w) => w.call<Entry>('lookup', url('fresh'))));
    expect(cold.map((e) => e.definitions.value.version)).toEqual([1, 1, 1]);
    const calls = await Promise.all(
      workers.map((w) => w.call<number>('stats').then((s) => (s as unknown as { computes: number }).computes)),
    );
    expect(calls.reduce((a, b) => a + b, 0)).toBe(1);

    // Every process holds the consumer (built on dep v1) in memory.
    for (const w of workers) expect((await w.call<Entry>('lookup', url('consumer'))).definitions.value.depVersions[url('dep')]).toBe(1);
    await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [url('dep')]);
    await workers[0].call('events');
    const invalidated = await workers[0].call<string[]>('invalidate', url('dep'));
    expect(invalidated).toEqual(expect.arrayContaining([url('dep'), url('consumer')]));
    const [event] = (await workers[0].call<ModuleCacheEvent[]>('events')).filter((e) => e.type === 'invalidated');
    expect(event).toMatchObject({ acknowledgements: { acknowledged: 2, expired: 0 } });
    // Right after it resolved, no process answers with what it removed.
    for (const w of workers.slice(1)) {
      expect((await w.call<Entry>('lookup', url('consumer'))).definitions.value.depVersions[url('dep')]).toBe(2);
      expect((await w.call<Entry>('lookup', url('dep'))).definitions.value.version).toBe(2);
    }
    // Signed payloads were all accepted: nothing rejected anywhere.
    const rejected = (await Promise.all(workers.map((w) => w.call<Stats>('stats')))).map((s) => s.notifications.rejected);
    expect(rejected).toEqual([0, 0, 0]);
  }, 60_000);
});
