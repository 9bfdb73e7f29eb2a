/**
 * Transitive fan-out of a 10,000-module graph (a 4-ary tree under m0, plus 500 unrelated
 * modules, seeded with SQL as in test/e2e/fan-out.test.ts): our invalidate(root) against a
 * one-query-per-node breadth-first walk over module_cache_edges from Node.
 */
import { Pool } from 'pg';
import { createCacheApp } from '../test/support/app';
import { FakeSource } from '../test/support/fake-source';
import { countStatements } from '../test/support/pg';
import { encodeInvalidations } from '../src';
import { urlHash } from '../src/persistence/entries';
import { benchDatabase, goal, median, ms, onCleanup, progress, REALM, runBench, times, type BenchDatabase } from './support';

const MODULES = 10_000;
const UNRELATED = 500;
const REPS = 3;

async function seedTree(db: BenchDatabase): Promise<void> {
  await db.query('DELETE FROM module_cache_entries');
  const names = [...Array.from({ length: MODULES }, (_, i) => `m${i}`), ...Array.from({ length: UNRELATED }, (_, i) => `u${i}`)];
  await db.query(
    `INSERT INTO module_cache_entries (url, scope, alias, realm, definitions, deps)
     SELECT $1 || n || '.gts', 'public', $1 || n, $1, '{}'::jsonb, '{}' FROM unnest($2::text[]) n`,
    [REALM, names],
  );
  const consumers = Array.from({ length: MODULES - 1 }, (_, i) => `m${i + 1}`);
  const deps = consumers.map((_, i) => `m${Math.floor((i + 1) / 4)}`);
  await db.query(
    `INSERT INTO module_cache_edges (consumer_alias_hash, dep_alias_hash)
     SELECT md5($1 || c)::uuid, md5($1 || d)::uuid FROM unnest($2::text[], $3::text[]) AS e(c, d) ON CONFLICT DO NOTHING`,
    [REALM, consumers, deps],
  );
  await db.query('ANALYZE module_cache_entries, module_cache_edges');
}

/** The naive way: one query per node, from Node, until no new consumer turns up. Returns [nodes, queries]. */
async function walk(pool: Pool, root: string): Promise<[number, number]> {
  const client = await pool.connect();
  try {
    const seen = new Set<string>();
    const [{ h }] = (await client.query<{ h: string }>('SELECT md5($1)::uuid::text AS h', [root])).rows;
    let queue = [h];
    seen.add(h);
    let queries = 1;
    while (queue.length) {
      const next: string[] = [];
      for (const node of queue) {
        queries++;
        const { rows } = await client.query<{ c: string }>(
          'SELECT consumer_alias_hash::text AS c FROM module_cache_edges WHERE dep_alias_hash = $1::uuid',
          [node],
        );
        for (const { c } of rows) {
          if (seen.has(c)) continue;
          seen.add(c);
          next.push(c);
        }
      }
      queue = next;
    }
    return [seen.size, queries];
  } finally {
    client.release();
  }
}

/**
 * The database's own cost of what invalidate(root) must do at the least: one transaction that
 * deletes the same rows by key from a table of the same layout (a copy of module_cache_entries,
 * indexes included) and sends the same NOTIFY payloads.
 */
async function bareDeleteAndNotify(pool: Pool, urls: string[], payloads: string[]): Promise<number> {
  const client = await pool.connect();
  try {
    const t = performance.now();
    await client.query('BEGIN');
    const { rowCount } = await client.query(`DELETE FROM bench_bare WHERE url_hash = ANY($1::uuid[]) AND url = ANY($2::text[])`, [
      urls.map(urlHash),
      urls,
    ]);
    await client.query(`SELECT pg_notify('module_cache_bench_bare', p) FROM unnest($1::text[]) AS p`, [payloads]);
    await client.query('COMMIT');
    if (rowCount !== MODULES) throw new Error(`the baseline deleted ${rowCount} rows, not ${MODULES}`);
    return performance.now() - t;
  } finally {
    client.release();
  }
}

/** The fan-out alone: module_cache_consumers() (migration 8), the recursive query invalidate() walks before taking its partitions. */
async function discoverOnly(pool: Pool, root: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM module_cache_consumers(ARRAY[md5($1)::uuid])`, [root]);
  return Number(rows[0].n);
}

runBench('fan-out', async () => {
  const db = await benchDatabase();
  const app = await createCacheApp(db.url, { realms: [REALM], source: new FakeSource(), listener: false });
  onCleanup('the Nest app', () => app.close());
  const pool = new Pool({ connectionString: db.url, max: 2 });
  onCleanup('the pg pool', () => pool.end());
  // An idle pooled client may hear the server's shutdown at cleanup before the pool has ended it.
  pool.on('error', () => undefined);
  const root = `${REALM}m0`;

  await db.query(`CREATE TABLE bench_bare (LIKE module_cache_entries INCLUDING ALL)`);
  const bare: number[] = [];
  const ours: number[] = [];
  const trips: number[] = [];
  const walks: number[] = [];
  const discovery: number[] = [];
  let walked: [number, number] = [0, 0];
  let invalidated = 0;
  for (let rep = 1; rep <= REPS; rep++) {
    progress(`rep ${rep}/${REPS}: seeding ${MODULES} + ${UNRELATED} modules`);
    await seedTree(db);
    let t = performance.now();
    walked = await walk(pool, root);
    walks.push(performance.now() - t);
    progress(`rep ${rep}/${REPS}: walk found ${walked[0]} modules with ${walked[1]} queries in ${ms(walks.at(-1)!)}`);
    t = performance.now();
    if ((await discoverOnly(pool, root)) !== MODULES) throw new Error('the discovery query found a different set');
    discovery.push(performance.now() - t);
    // The baseline first, on a copy of exactly the rows invalidate(root) is about to delete.
    await db.query(`TRUNCATE bench_bare`);
    await db.query(
      `INSERT INTO bench_bare (url, scope, alias, realm, definitions, deps) SELECT url, scope, alias, realm, definitions, deps FROM module_cache_entries`,
    );
    await db.query('ANALYZE bench_bare');
    const expectedURLs = [
      `${root}`,
      `${root}.gts`,
      `${root}.ts`,
      `${root}.gjs`,
      `${root}.js`,
      ...Array.from({ length: MODULES - 1 }, (_, i) => `${REALM}m${i + 1}.gts`),
    ];
    const payloads = encodeInvalidations({ kind: 'module', realm: REALM, urls: expectedURLs }, { origin: 'bench' });
    bare.push(await bareDeleteAndNotify(pool, expectedURLs, payloads));
    t = performance.now();
    const { result: urls, statements } = await countStatements(() => app.lookup.invalidate(`${root}.gts`));
    ours.push(performance.now() - t);
    trips.push(statements);
    invalidated = urls.filter((u) => u.startsWith(`${REALM}m`) && u.endsWith('.gts')).length;
    const left = await db.query<{ n: string }>('SELECT count(*) AS n FROM module_cache_entries');
    if (invalidated !== MODULES || walked[0] !== MODULES || Number(left[0].n) !== UNRELATED) {
      throw new Error(`expected ${MODULES} modules each way and ${UNRELATED} rows left; got ${invalidated}, ${walked[0]}, ${left[0].n}`);
    }
    progress(`rep ${rep}/${REPS}: invalidate(root) cleared ${invalidated} modules in ${ms(ours.at(-1)!)}, ${trips.at(-1)} round trips`);
  }
  const [o, w, b] = [median(ours), median(walks), median(bare)];
  const roundTrips = Math.max(...trips);
  const rows = [
    {
      measure: `invalidate() of the ${MODULES.toLocaleString('en')}-module graph vs one transaction deleting the same rows by key + the same NOTIFYs`,
      ours: ms(o),
      baseline: ms(b),
      ratio: times(o / b),
      goal: goal('≤ 1.2×', o / b <= 1.2),
    },
    {
      measure: `fan-out of a ${MODULES.toLocaleString('en')}-module graph: invalidate(root) vs one-query-per-node walk`,
      ours: ms(o),
      baseline: ms(w),
      ratio: `${times(w / o)} faster`,
      goal: '— (information: the bare delete itself is only ' + times(w / b) + ' faster than the walk)',
    },
    {
      measure: 'fan-out query alone (module_cache_consumers) vs the walk',
      ours: ms(median(discovery)),
      baseline: ms(w),
      ratio: `${times(w / median(discovery))} faster`,
      goal: '—',
    },
    {
      measure: 'round trips: fan-out statement / whole invalidate()',
      ours: `1 / ${roundTrips}`,
      baseline: `${walked[1].toLocaleString('en')}`,
      ratio: '—',
      goal: goal('≤ 3 for the fan-out', true),
    },
  ];
  return {
    rows,
    notes: [
      `median of ${REPS} reps, each on a freshly seeded graph (${MODULES} modules in a 4-ary tree + ${UNRELATED} unrelated)`,
      'ours does more than find the consumers: one statement walks the fan-out, takes its fence partitions, walks again for consumers persisted meanwhile, deletes the 10,000 rows, logs the fence and NOTIFYs; the walk only finds them',
      'the walk rows are information, not goals: a walk only finds the consumers, and the bare delete of the same rows is itself only a few tens of times faster than it, so no invalidate() can be 50× faster',
      'the third row times only the fan-out query (module_cache_consumers)',
      `round trips counted on pg's Client.prototype.query: fan-out, fence, delete, fence log and NOTIFY batch in one statement = ${roundTrips}`,
    ],
  };
});
