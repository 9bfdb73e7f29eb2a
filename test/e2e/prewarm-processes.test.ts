import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PrewarmSummary } from '../../src';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { spawnWorker, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

const REALM = 'https://example.test/realm/';
const url = (n: string) => `${REALM}${n}.ts`;
const MODULES = Array.from({ length: 20 }, (_, i) => url(`p${i}`));
let db: TestDatabase;
let a: WorkerHandle;
let b: WorkerHandle;

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url) SELECT unnest($1::text[])`, [MODULES]);
  await db.query(`UPDATE truth SET broken = true WHERE url = $1`, [url('p7')]);
  // A registers the realm, B does not: it prewarms through the explicit realm context.
  [a, b] = await Promise.all([
    spawnWorker('a', db.url, { realms: [REALM], listener: { applicationName: 'mc-prewarm-a' } }),
    spawnWorker('b', db.url, { realms: [], listener: { applicationName: 'mc-prewarm-b' } }),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await db?.drop();
});

describe('prewarm across processes (2 OS processes)', () => {
  it('two processes prewarming one realm at once compute each module once, and neither stores the error entry', async () => {
    const [fromA, fromB] = await Promise.all([
      a.call<PrewarmSummary>('prewarm', REALM, MODULES),
      b.call<PrewarmSummary>('prewarm', REALM, MODULES),
    ]);
    for (const summary of [fromA, fromB]) {
      expect(summary.requested).toBe(20);
      expect(summary.warmed + summary.alreadyCached).toBe(19);
      expect(summary.errors).toEqual([{ url: url('p7'), message: `broken: ${url('p7')} v1` }]);
    }
    // Claims across processes: one computation per stored module; the broken one is stored by
    // neither, so each process computed it for itself.
    const calls = (await a.call<number>('sourceCalls')) + (await b.call<number>('sourceCalls'));
    expect(calls).toBe(19 + 2);
    const rows = await db.query<{ url: string }>(`SELECT url FROM module_cache_entries ORDER BY url`);
    expect(rows.map((r) => r.url)).toEqual(MODULES.filter((m) => m !== url('p7')).sort());
    // A later lookup computes the broken module, and stores its error.
    expect((await a.call<{ error?: { message: string } }>('lookup', url('p7'))).error?.message).toBe(`broken: ${url('p7')} v1`);
    expect(await db.query(`SELECT 1 FROM module_cache_entries WHERE url = $1 AND error IS NOT NULL`, [url('p7')])).toHaveLength(1);
  });
});
