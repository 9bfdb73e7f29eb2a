/**
 * Memory after 1,000,000 invalidations of distinct modules with nothing in flight, applied
 * through the internal `forgetModules` that remote invalidation messages use (as in
 * test/e2e/fan-out.test.ts's bounded-generations test). Baseline: a naive
 * Map<string, number> generation counter doing the same, to show unbounded growth.
 * Needs `node --expose-gc` (the npm script passes it).
 */
import { createCacheApp } from '../test/support/app';
import { FakeSource } from '../test/support/fake-source';
import { benchDatabase, goal, megabytes, ms, onCleanup, progress, REALM, runBench } from './support';

const INVALIDATIONS = 1_000_000;
const BATCH = 1_000;

function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc (npm run bench:generations does)');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

const aliasesOf = (from: number) => Array.from({ length: BATCH }, (_, j) => `${REALM}gone/module-${from + j}`);

runBench('generations', async () => {
  const db = await benchDatabase();
  const app = await createCacheApp(db.url, { realms: [REALM], source: new FakeSource(), listener: false });
  onCleanup('the Nest app', () => app.close());
  const lookup = app.lookup as unknown as { forgetModules(aliases: Iterable<string>): void };

  progress(`ours: ${INVALIDATIONS.toLocaleString('en')} distinct module invalidations through forgetModules`);
  const before = heapAfterGc();
  let t = performance.now();
  for (let i = 0; i < INVALIDATIONS; i += BATCH) lookup.forgetModules(aliasesOf(i));
  const oursMs = performance.now() - t;
  const after = heapAfterGc();
  const stats = app.lookup.stats();

  progress('baseline: a naive Map<string, number> counter');
  const naive = new Map<string, number>();
  const naiveBefore = heapAfterGc();
  t = performance.now();
  for (let i = 0; i < INVALIDATIONS; i += BATCH) for (const alias of aliasesOf(i)) naive.set(alias, (naive.get(alias) ?? 0) + 1);
  const naiveMs = performance.now() - t;
  const naiveAfter = heapAfterGc();
  const naiveSize = naive.size;
  naive.clear();

  const grew = after - before;
  const naiveGrew = naiveAfter - naiveBefore;
  const rows = [
    {
      measure: `heap growth after ${INVALIDATIONS.toLocaleString('en')} distinct invalidations, nothing in flight`,
      ours: megabytes(grew),
      baseline: `${megabytes(naiveGrew)} (naive Map counter)`,
      ratio: `${((100 * grew) / naiveGrew).toFixed(1)}%`,
      goal: goal('flat', grew < 2 * 2 ** 20 && stats.trackedGenerations === 0),
    },
    {
      measure: 'generation counters alive afterwards (stats().trackedGenerations)',
      ours: `${stats.trackedGenerations}`,
      baseline: `${naiveSize.toLocaleString('en')}`,
      ratio: '—',
      goal: goal('0', stats.trackedGenerations === 0),
    },
    {
      measure: 'time for the 1,000,000 invalidations (local effects only)',
      ours: ms(oursMs),
      baseline: ms(naiveMs),
      ratio: '—',
      goal: '—',
    },
  ];
  return {
    rows,
    summary: rows.slice(0, 2),
    notes: [
      `heap used after two forced GCs, before and after; "flat" here means under 2 MB of growth and no counter left (inFlight: ${stats.inFlight})`,
    ],
  };
});
