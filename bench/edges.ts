/**
 * Edges that follow the graph: one module whose imports change 1,000 times (the source answers
 * with a new dependency each time; invalidate() then lookup() each time, as an edit would). At
 * the end the module's edges in module_cache_edges must be exactly its current imports, and the
 * table must not have grown with the history.
 */
import { createCacheApp } from '../test/support/app';
import { FakeSource } from '../test/support/fake-source';
import { benchDatabase, goal, median, ms, onCleanup, progress, REALM, runBench } from './support';

const CHANGES = 1_000;

runBench('edges', async () => {
  const db = await benchDatabase();
  const source = new FakeSource();
  const app = await createCacheApp(db.url, { realms: [REALM], source, listener: false });
  onCleanup('the Nest app', () => app.close());
  const url = (name: string) => `${REALM}edges/${name}.gts`;
  const module = url('e');
  const deps = Array.from({ length: CHANGES }, (_, i) => `d${i}`);
  for (const d of deps) source.define(url(d));

  const steps: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    source.define(module, [url(deps[i])]);
    const t = performance.now();
    await app.lookup.invalidate(module);
    const entry = await app.lookup.lookup(module);
    steps.push(performance.now() - t);
    if (entry?.deps.length !== 1 || entry.deps[0].replace(/\.gts$/, '') !== `${REALM}edges/${deps[i]}`)
      throw new Error(`change ${i}: lookup() answered deps ${JSON.stringify(entry?.deps)}`);
    if ((i + 1) % 250 === 0) progress(`${i + 1}/${CHANGES} import changes`);
  }

  // The module's edges, by alias (the URL without its extension), named by matching every dependency it ever had.
  const edges = await db.query<{ dep: string }>(
    `SELECT d.name AS dep FROM module_cache_edges e
       JOIN unnest($2::text[]) AS d(name) ON e.dep_alias_hash = md5($3 || d.name)::uuid
      WHERE e.consumer_alias_hash = md5($1)::uuid ORDER BY 1`,
    [`${REALM}edges/e`, deps, `${REALM}edges/`],
  );
  const [{ own }] = await db.query<{ own: number }>(
    `SELECT count(*)::int AS own FROM module_cache_edges WHERE consumer_alias_hash = md5($1)::uuid`,
    [`${REALM}edges/e`],
  );
  const [{ total, bytes }] = await db.query<{ total: number; bytes: string }>(
    `SELECT count(*)::int AS total, pg_total_relation_size('module_cache_edges')::text AS bytes FROM module_cache_edges`,
  );
  const current = [deps[CHANGES - 1]];
  const same = own === current.length && edges.map((e) => e.dep).join() === current.join();
  const rows = [
    {
      measure: `edges of one module after ${CHANGES.toLocaleString('en')} import changes (invalidate() + lookup() each) vs its current imports`,
      ours: `${own} (${edges.map((e) => e.dep).join(', ') || 'none'})`,
      baseline: `${current.length} (${current.join(', ')})`,
      ratio: '—',
      goal: goal('equal', same),
    },
    {
      measure: 'module_cache_edges afterwards: rows, table + index size',
      ours: `${total} row${total === 1 ? '' : 's'}, ${(Number(bytes) / 1024).toFixed(0)} kB`,
      baseline: `${current.length} (its current imports; ${CHANGES.toLocaleString('en')} if the table only grew)`,
      ratio: '—',
      goal: goal(`${current.length} row`, total === current.length),
    },
    {
      measure: 'one import change: invalidate() + lookup() (recompute, persist with its edges), p50',
      ours: ms(median(steps)),
      baseline: '—',
      ratio: '—',
      goal: '—',
    },
  ];
  return {
    rows,
    notes: [
      `one process, no listener; the module's source answers with a new import (d0 … d${CHANGES - 1}) before each invalidate(), so each lookup() recomputes and persists`,
      'the size is on disk: the primary key and the dep index included, and the dead row versions of the 1,000 replaced edges until (auto)vacuum reclaims them',
    ],
  };
});
