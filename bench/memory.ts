/**
 * Memory-tier hits: CachingDefinitionLookup.lookup() on entries already in memory, against
 * lru-cache `get` and bentocache `getOrSet` (memory driver) on the same keys and values.
 */
import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { LRUCache } from 'lru-cache';
import type { ModuleCacheEntry } from '../src';
import { createCacheApp } from '../test/support/app';
import { FakeSource } from '../test/support/fake-source';
import { benchDatabase, goal, median, onCleanup, progress, rate, REALM, runBench, times } from './support';

const KEYS = 1_000;
const ROUND_MS = 250;
const ROUNDS = 4;

type Contender = { name: string; run: (url: string) => unknown; async: boolean };

/** Operations per second over ~ROUND_MS, in chunks so the clock is read rarely. */
async function throughput(c: Contender, urls: string[]): Promise<number> {
  const started = performance.now();
  let ops = 0;
  while (performance.now() - started < ROUND_MS) {
    if (c.async) for (let i = 0; i < 5_000; i++) await c.run(urls[(ops + i) % KEYS]);
    else for (let i = 0; i < 5_000; i++) c.run(urls[(ops + i) % KEYS]);
    ops += 5_000;
  }
  return ops / ((performance.now() - started) / 1000);
}

function bento(serialize: boolean): BentoCache<{ memory: ReturnType<typeof bentostore> }> {
  const cache = new BentoCache({
    default: 'memory',
    stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000, serialize })) },
  });
  onCleanup(`bentocache (serialize: ${serialize})`, () => cache.disconnectAll());
  return cache;
}

runBench('memory', async () => {
  const db = await benchDatabase();
  const source = new FakeSource();
  const urls = Array.from({ length: KEYS }, (_, i) => `${REALM}mod-${i}.gts`);
  for (const url of urls) source.define(url, [], { definitions: { default: { kind: 'class', name: `Mod${url.length}` } } });
  const app = await createCacheApp(db.url, { realms: [REALM], source, listener: false });
  onCleanup('the Nest app', () => app.close());
  const lookup = app.lookup;

  progress(`populating ${KEYS} entries (computed, persisted, remembered)`);
  const entries = new Map<string, ModuleCacheEntry>();
  for (let i = 0; i < KEYS; i += 50) {
    const batch = urls.slice(i, i + 50);
    (await Promise.all(batch.map((url) => lookup.lookup(url)))).forEach((entry, j) => entries.set(batch[j], entry!));
  }
  progress('populated');
  const lru = new LRUCache<string, ModuleCacheEntry>({ max: 10_000 });
  for (const [url, entry] of entries) lru.set(url, entry);
  const fast = bento(false);
  const serialized = bento(true);
  for (const [url, entry] of entries) {
    await fast.getOrSet({ key: url, factory: () => entry, ttl: '1h' });
    await serialized.getOrSet({ key: url, factory: () => entry, ttl: '1h' });
  }

  const contenders: Contender[] = [
    { name: 'ours', run: (url) => lookup.lookup(url), async: true },
    { name: 'lru-cache', run: (url) => lru.get(url), async: false },
    { name: 'bentocache', run: (url) => fast.getOrSet({ key: url, factory: () => entries.get(url)!, ttl: '1h' }), async: true },
    {
      name: 'bentocache-serialize',
      run: (url) => serialized.getOrSet({ key: url, factory: () => entries.get(url)!, ttl: '1h' }),
      async: true,
    },
  ];
  const before = lookup.stats();
  progress('warming up');
  for (const c of contenders) await throughput(c, urls);
  const results = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    progress(`round ${round}/${ROUNDS} (${contenders.length} contenders × ${ROUND_MS} ms, interleaved)`);
    for (const c of contenders) results.get(c.name)!.push(await throughput(c, urls));
  }
  const after = lookup.stats();
  if (after.computes !== before.computes || after.hits.table !== before.hits.table) throw new Error('a lookup left the memory tier');

  const [ours, lruRate, bentoRate, bentoSerRate] = contenders.map((c) => median(results.get(c.name)!));
  const rows = [
    {
      measure: 'memory hit lookups/s vs bentocache getOrSet',
      ours: rate(ours),
      baseline: rate(bentoRate),
      ratio: times(ours / bentoRate),
      goal: goal('≥ 10×', ours / bentoRate >= 10),
    },
    {
      measure: 'memory hit lookups/s vs lru-cache get',
      ours: rate(ours),
      baseline: rate(lruRate),
      ratio: times(ours / lruRate),
      goal: '— (floor: a bare LRU get)',
    },
    {
      measure: 'memory hit lookups/s vs bentocache (default serialize: true)',
      ours: rate(ours),
      baseline: rate(bentoSerRate),
      ratio: times(ours / bentoSerRate),
      goal: '—',
    },
  ];
  return {
    rows,
    summary: rows.slice(0, 2),
    notes: [
      `median of ${ROUNDS} interleaved rounds over ${KEYS} keys; every lookup awaited one at a time (lru-cache get is synchronous)`,
      'bentocache: memory driver only (no L2, no bus), serialize: false (its fastest setting) in the headline row',
      "ours: a URL seen before is not parsed again (contexts cached by the caller's spelling); each call checks the heartbeat trust, the LRU and the error TTL, and counts the hit",
    ],
  };
});
