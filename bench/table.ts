/**
 * Table-tier hits: lookup() with the memory tier off (so every call reads the row from the
 * table) against a raw `pg` primary-key select of the same row over a pg Pool. Samples are
 * interleaved one by one so both see the same server and machine load.
 */
import { Pool } from 'pg';
import { createCacheApp } from '../test/support/app';
import { FakeSource } from '../test/support/fake-source';
import { benchDatabase, goal, ms, onCleanup, progress, REALM, runBench, summarize, times } from './support';

const SAMPLES = 3_000;
const WARMUP = 300;
const BLOCK = 25;

runBench('table', async () => {
  const db = await benchDatabase();
  const url = `${REALM}components/card.gts`;
  // A realistic row: a couple of dozen exported definitions and a few deps.
  const definitions = Object.fromEntries(
    Array.from({ length: 24 }, (_, i) => [`Export${i}`, { kind: i % 3 ? 'function' : 'class', name: `Export${i}`, line: i * 7 }]),
  );
  const source = new FakeSource().set(url, { definitions, deps: [] });
  const app = await createCacheApp(db.url, { realms: [REALM], source, listener: false, memory: false });
  onCleanup('the Nest app', () => app.close());
  const pool = new Pool({ connectionString: db.url, max: 10 });
  onCleanup('the pg pool', () => pool.end());
  const preparedPool = new Pool({ connectionString: db.url, max: 10 });
  onCleanup('the second pg pool', () => preparedPool.end());
  await app.lookup.lookup(url); // computes and persists the row once
  const PK_SELECT = `SELECT url, realm, scope, alias, definitions, deps, error, created_at FROM module_cache_entries WHERE url_hash = md5($1)::uuid AND scope = $2`;
  const raw = () => pool.query(PK_SELECT, [url, 'public']);
  // The strongest raw baseline too: the same select as a named prepared statement (planned once per connection).
  const rawPrepared = () => preparedPool.query({ name: 'bench_pk_select', text: PK_SELECT, values: [url, 'public'] });

  const contenders: Record<string, () => Promise<unknown>> = {
    lookup: async () => {
      if (!(await app.lookup.lookup(url))) throw new Error('the row went missing');
    },
    lookupCached: () => app.lookup.lookupCached(url),
    raw: async () => {
      if ((await raw()).rows.length !== 1) throw new Error('the row went missing');
    },
    rawPrepared: async () => {
      if ((await rawPrepared()).rows.length !== 1) throw new Error('the row went missing');
    },
  };
  const samples = new Map<string, number[]>(Object.keys(contenders).map((k) => [k, []]));
  const before = app.lookup.stats();
  progress(`${WARMUP} warm-up + ${SAMPLES} samples of lookup(), lookupCached(), the raw select and the same select prepared`);
  // Blocks of consecutive calls, contenders in a fresh random order per round: each gets its
  // connection's backend equally "warm", and none always follows the same one.
  for (let done = 0; done < WARMUP + SAMPLES; done += BLOCK) {
    for (const name of Object.keys(contenders).sort(() => Math.random() - 0.5)) {
      for (let i = 0; i < BLOCK; i++) {
        const t = performance.now();
        await contenders[name]();
        if (done >= WARMUP) samples.get(name)!.push(performance.now() - t);
      }
    }
    if (done > 0 && done % 1000 === 0) progress(`${done}/${WARMUP + SAMPLES}`);
  }
  const after = app.lookup.stats();
  // lookup() and lookupCached() each count their table hits.
  const calls = 2 * (WARMUP + SAMPLES);
  if (after.computes !== before.computes || after.hits.table - before.hits.table !== calls || after.hits.memory !== before.hits.memory) {
    throw new Error(
      `expected ${calls} table hits and nothing else, got ${JSON.stringify(after.hits)} (before: ${JSON.stringify(before.hits)})`,
    );
  }
  const [o, k, r, rp] = ['lookup', 'lookupCached', 'raw', 'rawPrepared'].map((name) => summarize(samples.get(name)!));
  const row = (measure: string, s: typeof o, base: number, g: string, better: number) => ({
    measure,
    ours: ms(measure.includes('p99') ? s.p99 : s.p50),
    baseline: ms(base),
    ratio: times((measure.includes('p99') ? s.p99 : s.p50) / base),
    goal: g === '—' ? g : goal(g, better <= 1.3),
  });
  const rows = [
    row('table-tier hit latency p50: lookup() vs raw pg PK select', o, r.p50, '≤ 1.3×', o.p50 / r.p50),
    row('table-tier hit latency p99: lookup() vs raw pg PK select', o, r.p99, '—', 0),
    row('table-tier hit latency p50: lookupCached() vs raw pg PK select', k, r.p50, '—', 0),
    row('table-tier hit latency p50: lookup() vs raw PK select as a named prepared statement', o, rp.p50, '—', 0),
  ];
  return {
    rows,
    summary: rows.slice(0, 2),
    notes: [
      `${SAMPLES} samples each after ${WARMUP} warm-up, in blocks of ${BLOCK} interleaved in random order; memory tier off (memory: false), so each call is a table hit (checked: every call was a table hit, 0 computations)`,
      "ours reads through the DataSource's pg pool as a named prepared statement (src/persistence); the headline baseline is a plain pool.query() of the same columns by primary key",
    ],
  };
});
