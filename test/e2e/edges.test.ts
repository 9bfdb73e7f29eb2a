import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DefinitionSourceContext, LoadedModule } from '../../src';
import { createCacheApp, migrate, type CacheApp } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { FakeSource } from '../support/fake-source';
import { waitFor } from '../support/wait';

/**
 * The graph follows the modules: a persist replaces its module's edges with its current imports
 * (the union over the scopes it is cached in), and clears remove the edges nothing needs.
 */
const REALM = 'https://example.test/edges/';
const OTHER = 'https://example.test/edges-other/';
const url = (n: string, realm = REALM) => `${realm}${n}.gts`;
let db: TestDatabase;
let source: FakeSource;
let cache: CacheApp;

/** The modules `name` imports according to the edges table (by alias). */
async function importsOf(name: string, realm = REALM, candidates: string[] = []): Promise<string[]> {
  const rows = await db.query<{ dep: string }>(
    `SELECT d.name AS dep FROM module_cache_edges e
       JOIN unnest($2::text[]) AS d(name) ON e.dep_alias_hash = md5(d.name)::uuid
      WHERE e.consumer_alias_hash = md5($1)::uuid ORDER BY 1`,
    [`${realm}${name}`, candidates],
  );
  return rows.map((r) => r.dep.slice(realm.length));
}
const edgeCount = async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM module_cache_edges`))[0].n;

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  source = new FakeSource();
  cache = await createCacheApp(db.url, { realms: [REALM, OTHER], source, listener: false });
});
afterEach(async () => {
  await cache.lookup.clearAll();
});
afterAll(async () => {
  await cache.close();
  await db.drop();
});

describe('edges follow the graph', () => {
  it('after many import changes, a module has exactly its current imports', async () => {
    const deps = Array.from({ length: 60 }, (_, i) => `d${i}`);
    for (const d of deps) source.define(url(d));
    for (const d of deps) {
      source.define(url('e'), [url(d)]);
      await cache.lookup.invalidate(url('e'));
      await cache.lookup.lookup(url('e'));
    }
    expect(
      await importsOf(
        'e',
        REALM,
        deps.map((d) => `${REALM}${d}`),
      ),
    ).toEqual(['d59']);
    // And the fan-out follows: the old imports no longer reach it.
    expect(await cache.lookup.invalidate(url('d0'))).not.toContain(url('e'));
    expect(await cache.lookup.invalidate(url('d59'))).toContain(url('e'));
  });

  it('keeps the union of the imports over the scopes a module is cached in', async () => {
    for (const d of ['d1', 'd2', 'd3']) source.define(url(d));
    source.set(url('e'), (_u: string, ctx: DefinitionSourceContext) => ({
      definitions: {},
      deps: [url(ctx.scope === 'public' ? 'd1' : 'd2')],
    }));
    await cache.lookup.lookup(url('e'));
    await cache.lookup.lookup(url('e'), { scope: 'user:1' });
    const all = ['d1', 'd2', 'd3'].map((d) => `${REALM}${d}`);
    expect(await importsOf('e', REALM, all)).toEqual(['d1', 'd2']);
    // The public scope's imports change (d1 → d3), the user's stay: d1 goes, d2 stays.
    source.set(url('e'), (_u: string, ctx: DefinitionSourceContext) => ({
      definitions: {},
      deps: [url(ctx.scope === 'public' ? 'd3' : 'd2')],
    }));
    await db.query(`DELETE FROM module_cache_entries WHERE url = $1 AND scope = 'public'`, [url('e')]);
    cache.lookup['forgetModules']([`${REALM}e`]);
    await cache.lookup.lookup(url('e'));
    expect(await importsOf('e', REALM, all)).toEqual(['d2', 'd3']);
  });

  it("a computation that read the old import while the module's imports changed is refused, and the edges end current", async () => {
    for (const d of ['d1', 'd2']) source.define(url(d));
    let imports = url('d1');
    let gate: Promise<void> | undefined;
    let open!: () => void;
    let waiting = 0;
    source.set(url('e'), async (_u: string, ctx: DefinitionSourceContext): Promise<LoadedModule> => {
      const deps = [imports]; // what this computation read, taken when it starts
      if (ctx.scope === 'held' && gate) {
        waiting++;
        await gate;
      }
      return { definitions: { imports: deps[0] }, deps };
    });
    await cache.lookup.lookup(url('e'));
    expect(await importsOf('e', REALM, [`${REALM}d1`, `${REALM}d2`])).toEqual(['d1']);
    // A computation of e (another scope) reads d1 and is held in flight.
    gate = new Promise((resolve) => (open = resolve));
    const held = cache.lookup.lookup(url('e'), { scope: 'held' });
    await waitFor(() => waiting === 1, 5000, 'the held computation');
    // The edit: e imports d2 now; e is invalidated and recomputed; then d1 changes.
    imports = url('d2');
    await cache.lookup.invalidate(url('e'));
    await cache.lookup.lookup(url('e'));
    expect(await importsOf('e', REALM, [`${REALM}d1`, `${REALM}d2`])).toEqual(['d2']);
    expect(await cache.lookup.invalidate(url('d1'))).not.toContain(url('e'));
    gate = undefined;
    open();
    const entry = await held;
    // Its first attempt (built on d1) was refused; the retry read d2.
    expect(entry?.definitions).toEqual({ imports: url('d2') });
    const rows = await db.query<{ scope: string; deps: string[] }>(
      `SELECT scope, deps FROM module_cache_entries WHERE url = $1 ORDER BY scope`,
      [url('e')],
    );
    expect(rows).toEqual([
      { scope: 'held', deps: [`${REALM}d2`] },
      { scope: 'public', deps: [`${REALM}d2`] },
    ]);
    expect(await importsOf('e', REALM, [`${REALM}d1`, `${REALM}d2`])).toEqual(['d2']);
  });

  it('clearRealm removes the edges of the modules it cleared that nothing depends on; clearAll removes every edge', async () => {
    source
      .define(url('a'), [url('b')])
      .define(url('b'), [url('c')])
      .define(url('c'));
    source.define(url('x', OTHER), [url('p', OTHER)]).define(url('p', OTHER));
    for (const u of [url('a'), url('b'), url('c'), url('x', OTHER)]) await cache.lookup.lookup(u);
    expect(await edgeCount()).toBe(3);
    await cache.lookup.clearRealm(REALM);
    expect(await edgeCount()).toBe(1);
    // A consumer in another realm keeps what it depends on in the cleared realm.
    source.define(url('y', OTHER), [url('a')]);
    for (const u of [url('y', OTHER), url('a'), url('b')]) await cache.lookup.lookup(u);
    expect(await edgeCount()).toBe(4);
    await cache.lookup.clearRealm(REALM);
    expect(await edgeCount()).toBe(4);
    await cache.lookup.clearAll();
    expect(await edgeCount()).toBe(0);
  });
});
