import { describe, expect, it, vi } from 'vitest';
import {
  DefinitionNotFoundError,
  InvalidModuleURLError,
  InvalidRealmURLError,
  UnknownRealmError,
  type ModuleCacheOptions,
} from '../../src';
import { UrlResolver } from '../../src/config/urls';
import type { CacheApp } from '../support/app';
import { useCacheTestBed } from '../support/test-bed';
import { FakeSource } from '../support/fake-source';

const REALM = 'https://example.test/realm/';
const OTHER = 'https://example.test/other/';
const bed = useCacheTestBed({ realms: [REALM, OTHER], listener: false });

function start(source: FakeSource, options: Partial<ModuleCacheOptions> = {}): Promise<CacheApp> {
  return bed.start({ source, ...options });
}

describe('lookup', () => {
  it('computes on a miss, persists, then serves from memory and, in a second app, from the table', async () => {
    const source = new FakeSource().define(`${REALM}a.gts`, ['./b']);
    source.define(`${REALM}b.gts`);
    // 'compute': the import is looked up (so computed and stored) too.
    const { lookup } = await start(source, { dependencyErrors: 'compute' });
    const first = await lookup.lookup(`${REALM}a.gts`);
    expect(first?.definitions).toEqual({ value: { version: 1, url: `${REALM}a.gts` } });
    expect(first?.deps).toEqual([`${REALM}b`]);
    expect(first?.error).toBeUndefined();
    expect(source.callsFor(`${REALM}a.gts`)).toBe(1);

    const again = await lookup.lookup(`${REALM}a.gts?x=1#frag`);
    expect(again).toBe(first);
    expect(lookup.stats().hits.memory).toBe(1);

    const second = await start(new FakeSource());
    const fromTable = await second.lookup.lookup(`${REALM}a.gts`);
    expect(fromTable?.definitions).toEqual(first?.definitions);
    expect(second.lookup.stats().hits.table).toBe(1);
    expect(second.lookup.stats().computes).toBe(0);
    const rows = await bed.db.query<{ url: string; alias: string }>(`SELECT url, alias FROM module_cache_entries ORDER BY url`);
    expect(rows).toEqual([
      { url: `${REALM}a.gts`, alias: `${REALM}a` },
      { url: `${REALM}b.gts`, alias: `${REALM}b` },
    ]);
  });

  it('keeps what the source returned as it returned it: the entry read from the table is the computed one, key order included', async () => {
    const url = `${REALM}ordered.ts`;
    // Export order as written, which is neither sorted nor by length (jsonb would reorder it).
    const definitions = { PetOwner: { kind: 'class' }, adopt: { kind: 'function', z: 1, a: 2 }, MAX_PETS: 3, b: null };
    const source = new FakeSource().set(url, { definitions, deps: [], diagnostics: { zone: 1, alpha: [2, 1] } });
    const computed = await (await start(source)).lookup.lookup(url);
    expect(Object.keys(computed!.definitions)).toEqual(['PetOwner', 'adopt', 'MAX_PETS', 'b']);
    const fromTable = await (await start(new FakeSource())).lookup.lookup(url);
    expect(JSON.stringify(fromTable)).toBe(JSON.stringify(computed));
  });

  it('tries extensions in order for an extensionless URL and moves on when the source returns null', async () => {
    const source = new FakeSource().define(`${REALM}c.gjs`);
    const { lookup } = await start(source);
    const entry = await lookup.lookup(`${REALM}c`);
    expect(entry?.url).toBe(`${REALM}c.gjs`);
    expect(source.calls).toEqual([`${REALM}c.gts`, `${REALM}c.ts`, `${REALM}c.gjs`]);
    expect(await lookup.lookup(`${REALM}missing`)).toBeUndefined();
    expect(source.calls.slice(3)).toEqual([
      `${REALM}missing.gts`,
      `${REALM}missing.ts`,
      `${REALM}missing.gjs`,
      `${REALM}missing.js`,
      `${REALM}missing`,
    ]);
    expect(await bed.db.query(`SELECT 1 FROM module_cache_entries WHERE url LIKE '%missing%'`)).toEqual([]);
  });

  it('keeps scopes apart and invalidation clears every scope', async () => {
    const source = new FakeSource().set(`${REALM}s.ts`, (_url, ctx) => ({ definitions: { who: ctx.scope }, deps: [] }));
    const { lookup } = await start(source);
    expect((await lookup.lookup(`${REALM}s.ts`))?.definitions).toEqual({ who: 'public' });
    expect((await lookup.lookup(`${REALM}s.ts`, { scope: 'user:1' }))?.definitions).toEqual({ who: 'user:1' });
    expect(source.calls.length).toBe(2);
    expect(await bed.db.query(`SELECT scope FROM module_cache_entries ORDER BY scope`)).toEqual([{ scope: 'public' }, { scope: 'user:1' }]);
    const urls = await lookup.invalidate(`${REALM}s.ts`);
    expect(urls).toContain(`${REALM}s.ts`);
    expect(await bed.db.query(`SELECT scope FROM module_cache_entries`)).toEqual([]);
    expect(await lookup.lookupCached(`${REALM}s.ts`, { scope: 'user:1' })).toBeUndefined();
  });

  it('serves an error row for errorTtlMs, then recomputes', async () => {
    let broken = true;
    const source = new FakeSource().set(`${REALM}e.ts`, () =>
      broken ? { definitions: {}, deps: [], error: { message: 'boom', status: 500 } } : { definitions: { ok: true }, deps: [] },
    );
    // No memory tier: every lookup asks the table, whose age check runs on the database clock.
    // The TTL is far longer than the test, so the row is young until the test itself ages it.
    const errorTtlMs = 60_000;
    const { lookup } = await start(source, { errorTtlMs, memory: false });
    expect((await lookup.lookup(`${REALM}e.ts`))?.error).toEqual({ message: 'boom', status: 500 });
    broken = false;
    expect((await lookup.lookup(`${REALM}e.ts`))?.error?.message).toBe('boom');
    expect(source.calls.length).toBe(1);
    expect(lookup.stats().hits).toEqual({ memory: 0, table: 1 });

    // Age the stored error row past errorTtlMs instead of waiting for it to get old.
    const aged = await bed.db.query(
      `UPDATE module_cache_entries SET created_at = now() - ($2::bigint + 1000) * interval '1 millisecond' WHERE url = $1 RETURNING 1`,
      [`${REALM}e.ts`, errorTtlMs],
    );
    expect(aged).toHaveLength(1);
    const entry = await lookup.lookup(`${REALM}e.ts`);
    expect(entry?.error).toBeUndefined();
    expect(entry?.definitions).toEqual({ ok: true });
    expect(source.calls.length).toBe(2);
    expect(await bed.db.query(`SELECT error FROM module_cache_entries WHERE url = $1`, [`${REALM}e.ts`])).toEqual([{ error: null }]);
  });

  it("with 'compute', attaches dependency errors transitively and de-duplicated, and recovers once the dependency is fixed", async () => {
    let broken = true;
    const source = new FakeSource()
      .define(`${REALM}top.gts`, ['./mid', './leaf'])
      .define(`${REALM}mid.gts`, ['./leaf'])
      .set(`${REALM}leaf.gts`, () =>
        broken ? { definitions: {}, deps: [], error: { message: 'leaf is broken', status: 422 } } : { definitions: { ok: 1 }, deps: [] },
      );
    const { lookup } = await start(source, { dependencyErrors: 'compute' });
    const top = await lookup.lookup(`${REALM}top.gts`);
    expect(top?.error?.message).toMatch(/leaf is broken/);
    const leafErrors = top?.error?.additionalErrors?.filter((e) => e.url === `${REALM}leaf.gts`);
    expect(leafErrors).toHaveLength(1);
    // mid itself is fine: only the root cause is attached, once.
    expect(top?.error?.additionalErrors?.map((e) => e.url)).toEqual([`${REALM}leaf.gts`]);
    expect(top?.error).toMatchObject({ fromDependency: true, status: 422, url: `${REALM}top.gts` });
    await expect(lookup.lookupDefinition(`${REALM}top.gts`, 'value')).rejects.toBeInstanceOf(DefinitionNotFoundError);

    broken = false;
    const invalidated = await lookup.invalidate(`${REALM}leaf.gts`);
    expect(invalidated).toEqual(expect.arrayContaining([`${REALM}leaf.gts`, `${REALM}mid.gts`, `${REALM}top.gts`]));
    const fixed = await lookup.lookup(`${REALM}top.gts`);
    expect(fixed?.error).toBeUndefined();
    expect(await lookup.lookupDefinition(`${REALM}top.gts`, 'value')).toEqual({ version: 1, url: `${REALM}top.gts` });
  });

  it("with 'compute', reports a missing dependency and survives dependency cycles", async () => {
    const source = new FakeSource().define(`${REALM}x.ts`, ['./y.ts', './nope.ts']).define(`${REALM}y.ts`, ['./x.ts']);
    const { lookup } = await start(source, { dependencyErrors: 'compute' });
    const x = await lookup.lookup(`${REALM}x.ts`);
    expect(x?.error?.additionalErrors?.map((e) => [e.url, e.status])).toEqual([[`${REALM}nope.ts`, 404]]);
    expect((await lookup.lookup(`${REALM}y.ts`))?.deps).toEqual([`${REALM}x`]);
  });

  it('lookupDefinition, lookupCached and lookupMany', async () => {
    const source = new FakeSource()
      .set(`${REALM}d.ts`, { definitions: { Good: { kind: 'class' }, Bad: { type: 'error', error: { message: 'nope' } } }, deps: [] })
      .define(`${REALM}m1.ts`)
      .define(`${REALM}m2.ts`);
    const { lookup } = await start(source);
    expect(await lookup.lookupCached(`${REALM}d.ts`)).toBeUndefined();
    expect(source.calls).toEqual([]);
    expect(await lookup.lookupDefinition(`${REALM}d.ts`, 'Good')).toEqual({ kind: 'class' });
    await expect(lookup.lookupDefinition(`${REALM}d.ts`, 'Bad')).rejects.toThrow(/definition failed: nope/);
    await expect(lookup.lookupDefinition(`${REALM}d.ts`, 'Missing')).rejects.toThrow(/no such export/);
    await expect(lookup.lookupDefinition(`${REALM}none.ts`, 'X')).rejects.toThrow(/module not found/);
    await lookup.lookup(`${REALM}m1.ts`);
    await lookup.lookup(`${REALM}m2.ts`);
    const fresh = await start(new FakeSource());
    const many = await fresh.lookup.lookupMany([`${REALM}m1.ts`, `${REALM}m2`, `${REALM}m3.ts`]);
    expect(many.get(`${REALM}m1.ts`)?.url).toBe(`${REALM}m1.ts`);
    expect(many.get(`${REALM}m2`)?.url).toBe(`${REALM}m2.ts`);
    expect(many.get(`${REALM}m3.ts`)).toBeUndefined();
    expect(fresh.lookup.stats().hits).toEqual({ memory: 0, table: 2 });
    await fresh.lookup.lookupCached(`${REALM}m1.ts`);
    expect(fresh.lookup.stats().hits).toEqual({ memory: 1, table: 2 }); // lookupMany filled memory
  });

  it('parses a URL spelling once: later hits reuse its canonical form, until realms change', async () => {
    const source = new FakeSource().define(`${REALM}hot.ts`);
    const { lookup } = await start(source);
    const canonical = vi.spyOn(UrlResolver.prototype, 'canonical');
    try {
      await lookup.lookup(`${REALM}hot.ts?v=1`);
      for (let i = 0; i < 100; i++) await lookup.lookup(`${REALM}hot.ts?v=1`);
      expect(canonical).toHaveBeenCalledTimes(1);
      expect(lookup.stats().hits.memory).toBe(100);
      lookup.unregisterRealm(OTHER); // any change of realms may change what a spelling resolves to
      await lookup.lookup(`${REALM}hot.ts?v=1`);
      expect(canonical).toHaveBeenCalledTimes(2);
      lookup.unregisterRealm(REALM);
      await expect(lookup.lookup(`${REALM}hot.ts?v=1`)).rejects.toBeInstanceOf(UnknownRealmError);
    } finally {
      canonical.mockRestore();
    }
  });

  it('rejects bad URLs and lookups outside every realm, caching nothing (invalidating outside every realm is a no-op)', async () => {
    const source = new FakeSource();
    const { lookup } = await start(source);
    await expect(lookup.lookup('not a url')).rejects.toBeInstanceOf(InvalidModuleURLError);
    await expect(lookup.lookup('')).rejects.toBeInstanceOf(InvalidModuleURLError);
    await expect(lookup.lookup(42 as unknown as string)).rejects.toBeInstanceOf(InvalidModuleURLError);
    await expect(lookup.lookup('ftp://example.test/realm/a.ts')).rejects.toThrow(/http/);
    await expect(lookup.lookup('https://elsewhere.test/a.ts')).rejects.toBeInstanceOf(UnknownRealmError);
    expect(await lookup.invalidate('https://elsewhere.test/a.ts')).toEqual([]);
    await expect(lookup.invalidate('not a url')).rejects.toBeInstanceOf(InvalidModuleURLError);
    await expect(lookup.clearRealm('https://elsewhere.test/no-slash')).rejects.toBeInstanceOf(InvalidRealmURLError);
    await expect(lookup.lookup(`${REALM}a.ts`, { scope: '' })).rejects.toThrow(/scope/);
    // One URL where a list belongs: refused as such, not read character by character.
    await expect(lookup.lookupMany(`${REALM}a.ts` as unknown as string[])).rejects.toThrow(/must be an array of module URLs, got a string/);
    expect(source.calls).toEqual([]);
    expect(await bed.db.query(`SELECT 1 FROM module_cache_entries`)).toEqual([]);
  });
});
