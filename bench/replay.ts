/**
 * Reconnect resync, targeted vs full (issue 23): a reader process with 10,000 warm entries in
 * memory loses its listener connection (a TCP proxy cut and held off), 3 modules with 5 consumers
 * each are invalidated during the gap, and the connection comes back. Ours: the targeted replay
 * of the fence log. Baseline, in the same run and on the same data: the full resync that the
 * fallback does (forced by pruning the log past the reader's last sequence, as the retention
 * window would). For each: memory entries evicted, and the table reads (table hits + misses) of
 * the reader's traffic — a loop over the whole working set — in the second after memory is
 * trusted again.
 */
import type { DefinitionSource, LoadedModule, ModuleCacheEvent } from '../src';
import { ModuleCacheInvalidationListener } from '../src';
import { createCacheApp } from '../test/support/app';
import { startTcpProxy } from '../test/support/faults/tcp-proxy';
import { benchDatabase, goal, onCleanup, progress, REALM, runBench, sleep, times } from './support';

const ENTRIES = 10_000;
const INVALIDATED = 3;
const CONSUMERS = 5;
const WINDOW_MS = 1_000;
const CONCURRENCY = 16;
const url = (i: number) => `${REALM}m${i}.ts`;
const alias = (i: number) => `${REALM}m${i}`;
/** The consumers of module d (0 ≤ d < INVALIDATED). */
const consumersOf = (d: number) => Array.from({ length: CONSUMERS }, (_, j) => INVALIDATED + d * CONSUMERS + j);

/** The module a consumer imports (the graph the seeded edges describe), if it is one. */
const depOf = (i: number): number | undefined =>
  i >= INVALIDATED && i < INVALIDATED * (1 + CONSUMERS) ? Math.floor((i - INVALIDATED) / CONSUMERS) : undefined;

const source: DefinitionSource = {
  load: async (moduleURL: string): Promise<LoadedModule> => {
    const dep = depOf(Number(/m(\d+)\.ts$/.exec(moduleURL)?.[1]));
    return { definitions: { value: { url: moduleURL, at: Date.now() } }, deps: dep === undefined ? [] : [url(dep)] };
  },
};

interface Outcome {
  evicted: number;
  tableReads: number;
  lookups: number;
  computes: number;
  resync: Extract<ModuleCacheEvent, { type: 'resync' }>;
}

runBench('replay', async () => {
  const db = await benchDatabase();
  progress(`seeding ${ENTRIES} rows; modules 0..${INVALIDATED - 1} have ${CONSUMERS} consumers each`);
  await db.query(
    `INSERT INTO module_cache_entries (url, scope, alias, realm, definitions, deps)
     SELECT $1 || 'm' || i || '.ts', 'public', $1 || 'm' || i, $1, '{"value":{"seeded":true}}', '{}' FROM generate_series(0, $2 - 1) i`,
    [REALM, ENTRIES],
  );
  const edges = Array.from({ length: INVALIDATED }, (_, d) => consumersOf(d).map((c) => [alias(d), alias(c)])).flat();
  await db.query(
    `INSERT INTO module_cache_edges (dep_alias_hash, consumer_alias_hash) SELECT md5(d)::uuid, md5(c)::uuid FROM unnest($1::text[], $2::text[]) AS e(d, c)`,
    [edges.map((e) => e[0]), edges.map((e) => e[1])],
  );
  const proxy = await startTcpProxy(db.url);
  onCleanup('the TCP proxy', () => proxy.close());
  const writer = await createCacheApp(db.url, { realms: [REALM], source, listener: false });
  onCleanup('the writer app', () => writer.close());
  const reader = await createCacheApp(db.url, {
    realms: [REALM],
    source,
    memory: { maxEntries: 2 * ENTRIES },
    listener: {
      applicationName: 'mc-bench-replay-reader',
      connection: { connectionString: proxy.url },
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
      heartbeat: { intervalMs: 60_000, timeoutMs: 5_000 },
    },
  });
  onCleanup('the reader app', () => reader.close());
  const listener = reader.app.get(ModuleCacheInvalidationListener);
  const resyncs: Array<Extract<ModuleCacheEvent, { type: 'resync' }>> = [];
  reader.lookup.events$.subscribe((e) => e.type === 'resync' && resyncs.push(e));
  const urls = Array.from({ length: ENTRIES }, (_, i) => url(i));

  const warm = async () => {
    for (let i = 0; i < ENTRIES; i += 1_000) await reader.lookup.lookupMany(urls.slice(i, i + 1_000));
    // A heartbeat: the reader has applied everything so far (its replay starts here).
    if (!(await listener.selfProbe())) throw new Error('the reader could not prove its listener');
    const entries = reader.lookup.stats().memoryEntries;
    if (entries !== ENTRIES) throw new Error(`expected ${ENTRIES} entries in memory, found ${entries}`);
  };

  const scenario = async (label: string, invalidated: number[], prune: boolean): Promise<Outcome> => {
    await warm();
    progress(`${label}: cutting the listener; ${invalidated.length} invalidations during the gap${prune ? '; log pruned' : ''}`);
    proxy.refuse();
    proxy.cut();
    while (listener.state === 'listening') await sleep(5);
    for (const i of invalidated) await writer.lookup.invalidate(url(i));
    // What the retention window does: the rows up to the committed sequence are gone.
    if (prune) {
      await db.query('DELETE FROM module_cache_fence_log');
      await db.query('UPDATE module_cache_fence SET pruned_seq = committed_seq');
    }
    const before = resyncs.length;
    proxy.accept();
    while (resyncs.length === before || !listener.isTrusted()) await sleep(2);
    const resync = resyncs[before];
    const start = reader.lookup.stats();
    const until = performance.now() + WINDOW_MS;
    let lookups = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < until) {
          await reader.lookup.lookup(urls[next++ % ENTRIES]);
          lookups++;
        }
      }),
    );
    const end = reader.lookup.stats();
    const tableReads = end.hits.table + end.misses - (start.hits.table + start.misses);
    progress(
      `${label}: ${resync.mode} resync, ${resync.evicted} evicted; ${tableReads} table reads in ${lookups} lookups over the next second`,
    );
    return { evicted: resync.evicted, tableReads, lookups, computes: end.computes - start.computes, resync };
  };

  // The same modules both times: the first scenario's traffic computed them anew (with their deps).
  const targeted = await scenario('targeted', [0, 1, 2], false);
  const full = await scenario('full', [0, 1, 2], true);
  const affected = INVALIDATED * (1 + CONSUMERS);
  if (targeted.resync.mode !== 'targeted') throw new Error(`expected a targeted resync, got ${JSON.stringify(targeted.resync)}`);
  if (full.resync.mode !== 'full') throw new Error(`expected a full resync, got ${JSON.stringify(full.resync)}`);
  const rows = [
    {
      measure: `entries evicted by the reconnect (${ENTRIES} warm, ${INVALIDATED} invalidated during the gap, ${CONSUMERS} consumers each)`,
      ours: `${targeted.evicted} (targeted replay)`,
      baseline: `${full.evicted} (full resync)`,
      ratio: times(full.evicted / Math.max(1, targeted.evicted)),
      goal: goal(`= affected (${affected}), not ${ENTRIES}`, targeted.evicted === affected),
    },
    {
      measure: `table reads in the second after the reconnect (lookups over the working set, ${CONCURRENCY} at a time)`,
      ours: `${targeted.tableReads} of ${targeted.lookups} lookups`,
      baseline: `${full.tableReads} of ${full.lookups} lookups`,
      ratio: times(full.tableReads / Math.max(1, targeted.tableReads)),
      goal: goal(`≤ affected (${affected})`, targeted.tableReads <= affected),
    },
  ];
  return {
    rows,
    summary: rows,
    notes: [
      `targeted: replayed ${targeted.resync.mode === 'targeted' ? targeted.resync.rows : '?'} fence-log rows; computations in the second after: ${targeted.computes} (targeted) vs ${full.computes} (full)`,
      'full: forced by pruning the log past the reader’s last sequence (the fallback path); the table rows were all still there',
    ],
  };
});
