import { Client, type Notification } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';
import { spawnWorkers, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * The reference's wire format: invalidation payloads with only its keys (no origin), sent by a
 * plain client or emitted by a process with wireFormat: 'boxel' (the Boxel realm server's shape), are obeyed by every process.
 */
// Its database only: the apps under test are worker processes, on a realm they register at runtime.
const bed = useCacheTestBed({ realms: [], listener: false });

describe('across processes: the reference’s wire format', () => {
  const LIVE = 'https://example.test/live/';
  let workers: WorkerHandle[];
  let boxelWorker: WorkerHandle[];

  beforeAll(async () => {
    await bed.db.query(TRUTH_SQL);
    await bed.db.query(`INSERT INTO truth (url) SELECT $1 || 'r' || i || '.ts' FROM generate_series(0, 9) i`, [LIVE]);
    workers = await spawnWorkers(2, bed.db.url, (i) => ({ realms: [], listener: { applicationName: `mc-wire-${i}` } }));
    boxelWorker = await spawnWorkers(1, bed.db.url, () => ({
      realms: [],
      wireFormat: 'boxel',
      listener: { applicationName: 'mc-wire-boxel-emitter' },
    }));
    for (const w of [...workers, ...boxelWorker]) await w.call('registerRealm', LIVE);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([...(workers ?? []), ...(boxelWorker ?? [])].map((w) => w.stop()));
  });

  it('a raw reference-format NOTIFY sent by a plain client evicts in every process', async () => {
    for (const w of workers) await w.call('lookup', `${LIVE}r1.ts`);
    for (const w of workers) expect(await w.call('inMemory', `${LIVE}r1.ts`)).toBe(true);
    await bed.db.query(`SELECT pg_notify('module_cache_invalidated', $1)`, [JSON.stringify({ k: 'module', r: LIVE, m: [`${LIVE}r1.ts`] })]);
    await waitFor(
      async () => !(await workers[0].call('inMemory', `${LIVE}r1.ts`)) && !(await workers[1].call('inMemory', `${LIVE}r1.ts`)),
      10_000,
      'both evicted',
    );
  });

  it("wireFormat 'boxel' emits payloads with the reference's keys only, which peers obey", async () => {
    const spy = new Client({ connectionString: bed.db.url });
    const heard: string[] = [];
    await spy.connect();
    spy.on('notification', (n: Notification) => heard.push(n.payload ?? ''));
    await spy.query('LISTEN module_cache_invalidated');
    try {
      await workers[0].call('lookup', `${LIVE}r2.ts`);
      await boxelWorker[0].call('invalidate', `${LIVE}r2.ts`);
      await boxelWorker[0].call('clearRealm', LIVE);
      await boxelWorker[0].call('clearAll');
      await waitFor(() => heard.filter((p) => !p.includes('"probe"')).length >= 3, 10_000, 'three payloads');
      const payloads = heard.filter((p) => !p.includes('"probe"')).map((p) => JSON.parse(p) as Record<string, unknown>);
      expect(payloads.map((p) => Object.keys(p).sort())).toEqual([['k', 'm', 'r'], ['k', 'r'], ['k']]);
      await waitFor(async () => !(await workers[0].call('inMemory', `${LIVE}r2.ts`)), 10_000, 'the peer to obey');
    } finally {
      await spy.end();
    }
  });
});
