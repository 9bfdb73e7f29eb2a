/**
 * Bursts of invalidations in one process, as an indexer makes them: 600 invalidate() calls on
 * distinct modules (a cached row each, seeded with SQL, no consumers) with 1, 8 and 32 in flight,
 * against bare per-call transactions (BEGIN; DELETE by key; SELECT pg_notify(…); COMMIT) on a pg
 * pool of the app's size (pg's default, 10, as TypeORM's) at the same concurrency, with a LISTEN
 * client on the bare channel (ours has its own listener). Then invalidateMany() of 1,000 URLs
 * against one bare transaction deleting the same rows by key and sending the same payloads.
 * Every ratio is against a baseline measured in the same run, the two taking turns.
 */
import { Pool } from 'pg';
import { createCacheApp } from '../test/support/app';
import { FakeSource } from '../test/support/fake-source';
import { encodeInvalidations } from '../src';
import { urlHash } from '../src/persistence/entries';
import { benchClient, benchDatabase, goal, median, ms, onCleanup, progress, REALM, runBench, times, type BenchDatabase } from './support';

const rate = (perSecond: number): string => `${Math.round(perSecond).toLocaleString('en')}/s`;

const CALLS = 600;
const CONCURRENCY = [1, 8, 32];
const REPS = 5;
const MANY = 1_000;
const MANY_REPS = 5;
/** pg's default pool size, which the app's TypeORM DataSource uses too. */
const POOL_SIZE = 10;
const BARE_CHANNEL = 'module_cache_bench_bare';

/** Module `name` (relative to the realm, no extension): the URLs invalidate() reports for it (its variants). */
const variants = (name: string): string[] => ['', '.gts', '.ts', '.gjs', '.js'].map((ext) => `${REALM}${name}${ext}`);

/** A cached row per module, in `table` (module_cache_entries, or its copy bench_bare). */
async function seed(db: BenchDatabase, table: string, names: string[]): Promise<void> {
  await db.query(
    `INSERT INTO ${table} (url, scope, alias, realm, definitions, deps)
     SELECT $1 || n || '.gts', 'public', $1 || n, $1, '{}'::jsonb, '{}' FROM unnest($2::text[]) n`,
    [REALM, names],
  );
  await db.query(`ANALYZE ${table}`);
}

async function rowsLeft(db: BenchDatabase, table: string, names: string[]): Promise<number> {
  const [{ n }] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE alias = ANY($1::text[])`, [
    names.map((n) => `${REALM}${n}`),
  ]);
  return n;
}

/** Runs `call(0..count-1)` with `inFlight` calls outstanding at a time; returns the wall time in ms. */
async function burst(count: number, inFlight: number, call: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(inFlight, count) }, async () => {
      while (next < count) await call(next++);
    }),
  );
  return performance.now() - t;
}

/** The naive invalidation: one transaction per module, deleting its row by key and sending its payloads. */
async function bareInvalidation(pool: Pool, urls: string[], payloads: string[]): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rowCount } = await client.query(`DELETE FROM bench_bare WHERE url_hash = ANY($1::uuid[]) AND url = ANY($2::text[])`, [
      urls.map(urlHash),
      urls,
    ]);
    await client.query(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, [BARE_CHANNEL, payloads]);
    await client.query('COMMIT');
    return rowCount ?? 0;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

const payloadsFor = (urls: string[]): string[] => encodeInvalidations({ kind: 'module', realm: REALM, urls }, { origin: 'bench' });

runBench('burst', async () => {
  const db = await benchDatabase();
  // The app's own listener LISTENs on the invalidation channel (and hears its own NOTIFYs, as in production).
  const app = await createCacheApp(db.url, { realms: [REALM], source: new FakeSource() });
  onCleanup('the Nest app', () => app.close());
  const pool = new Pool({ connectionString: db.url, max: POOL_SIZE, application_name: 'mc-bench-burst-bare' });
  onCleanup('the pg pool', () => pool.end());
  pool.on('error', () => undefined);
  // The baseline's listener: a LISTEN client on its channel, receiving every payload it sends.
  const listener = await benchClient(db.url, 'mc-bench-burst-listen');
  let heard = 0;
  listener.on('notification', (n) => {
    if (n.channel === BARE_CHANNEL) heard++;
  });
  await listener.query(`LISTEN ${BARE_CHANNEL}`);
  await db.query(`CREATE TABLE bench_bare (LIKE module_cache_entries INCLUDING ALL)`);

  // Warm-up: both paths' connections opened, statements planned.
  {
    const names = Array.from({ length: 50 }, (_, i) => `warm/m${i}`);
    await seed(db, 'module_cache_entries', names);
    await seed(db, 'bench_bare', names);
    await burst(names.length, 8, (i) => app.lookup.invalidate(`${REALM}${names[i]}.gts`));
    await burst(names.length, 8, (i) => bareInvalidation(pool, variants(names[i]), payloadsFor(variants(names[i]))));
  }

  const perLevel = new Map<number, { ours: number[]; bare: number[] }>();
  for (const inFlight of CONCURRENCY) {
    const level = { ours: [] as number[], bare: [] as number[] };
    perLevel.set(inFlight, level);
    for (let rep = 1; rep <= REPS; rep++) {
      const names = Array.from({ length: CALLS }, (_, i) => `burst/c${inFlight}/r${rep}/m${i}`);
      await seed(db, 'module_cache_entries', names);
      await seed(db, 'bench_bare', names);
      const payloads = names.map((n) => payloadsFor(variants(n)));
      heard = 0;
      let deleted = 0;
      const bareMs = await burst(CALLS, inFlight, async (i) => {
        const n = await bareInvalidation(pool, variants(names[i]), payloads[i]);
        deleted += n;
      });
      if (deleted !== CALLS) throw new Error(`the baseline deleted ${deleted} rows, not ${CALLS}`);
      const oursMs = await burst(CALLS, inFlight, (i) => app.lookup.invalidate(`${REALM}${names[i]}.gts`));
      const left = await rowsLeft(db, 'module_cache_entries', names);
      if (left !== 0) throw new Error(`${left} rows survived their invalidate()`);
      level.bare.push((CALLS / bareMs) * 1000);
      level.ours.push((CALLS / oursMs) * 1000);
      progress(
        `${inFlight} in flight, rep ${rep}/${REPS}: ours ${rate(level.ours.at(-1)!)} (${ms(oursMs)}), bare ${rate(level.bare.at(-1)!)} (${ms(bareMs)}), ` +
          `${heard} bare payloads heard`,
      );
    }
  }

  // invalidateMany() of 1,000 URLs against one bare transaction doing the same deletes and NOTIFYs.
  const many: number[] = [];
  const manyBare: number[] = [];
  let manyPayloads = 0;
  for (let rep = 1; rep <= MANY_REPS; rep++) {
    const names = Array.from({ length: MANY }, (_, i) => `many/r${rep}/m${i}`);
    await seed(db, 'module_cache_entries', names);
    await seed(db, 'bench_bare', names);
    const urls = names.flatMap(variants);
    const payloads = payloadsFor(urls);
    manyPayloads = payloads.length;
    let t = performance.now();
    const deleted = await bareInvalidation(pool, urls, payloads);
    manyBare.push(performance.now() - t);
    if (deleted !== MANY) throw new Error(`the baseline deleted ${deleted} rows, not ${MANY}`);
    t = performance.now();
    const invalidated = await app.lookup.invalidateMany(names.map((n) => `${REALM}${n}.gts`));
    many.push(performance.now() - t);
    const left = await rowsLeft(db, 'module_cache_entries', names);
    if (left !== 0 || invalidated.length !== urls.length) {
      throw new Error(`invalidateMany: ${invalidated.length} URLs reported (expected ${urls.length}), ${left} rows left`);
    }
    progress(`invalidateMany of ${MANY}, rep ${rep}/${MANY_REPS}: ours ${ms(many.at(-1)!)}, bare ${ms(manyBare.at(-1)!)}`);
  }

  const level = (n: number) => ({ ours: median(perLevel.get(n)!.ours), bare: median(perLevel.get(n)!.bare) });
  const rows = CONCURRENCY.map((n) => {
    const { ours, bare } = level(n);
    const ratio = ours / bare;
    return {
      measure: `${CALLS} invalidate() calls on distinct modules, ${n} in flight, one process: calls/s vs bare per-call BEGIN; DELETE; pg_notify; COMMIT (pool ${POOL_SIZE})`,
      ours: rate(ours),
      baseline: rate(bare),
      ratio: times(ratio),
      goal: n === 32 ? goal('≥ 2× bare', ratio >= 2) : n === 1 ? goal('time ≤ 1.5× bare (≥ 0.67× its calls/s)', bare / ours <= 1.5) : '—',
    };
  });
  const [m, mb] = [median(many), median(manyBare)];
  rows.push({
    measure: `invalidateMany() of ${MANY.toLocaleString('en')} URLs vs one transaction deleting the same rows by key + the same ${manyPayloads} NOTIFYs`,
    ours: ms(m),
    baseline: ms(mb),
    ratio: times(m / mb),
    goal: goal('≤ 1.2×', m / mb <= 1.2),
  });
  const scaling = level(32).ours / level(1).ours;
  const bareScaling = level(32).bare / level(1).bare;
  return {
    rows,
    notes: [
      `median of ${REPS} reps per concurrency (bare first, then ours, on fresh rows: ${CALLS} distinct modules with a cached row each, no consumers); ` +
        `invalidateMany: median of ${MANY_REPS}`,
      `ours: the app's TypeORM pool (pg default ${POOL_SIZE}), its own listener attached; concurrent calls are group-committed (one transaction carries the calls ` +
        `that arrived while earlier ones were in flight); bare: a pg Pool of ${POOL_SIZE}, 4 round trips per call, a LISTEN client on its channel`,
      `32 vs 1 in flight: ours ${times(scaling)} the calls/s, bare ${times(bareScaling)}`,
      'the machine is shared (2 cores, other sessions running their tests and benchmarks): figures move between runs',
    ],
  };
});
