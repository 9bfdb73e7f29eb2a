import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ModuleCacheError, type CachingDefinitionLookup, type LookupOptions, type ModuleCacheEntry } from '../../src';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';

/**
 * One rule gives the scope of every call on every path (SPEC, Public API): `options.scope`, else
 * `scopeFor(realm, options.user)`, else 'public'; what is stored is exactly what was asked for.
 */
const PUBLIC_REALM = 'https://example.test/open/';
const PRIVATE_REALM = 'https://example.test/private/';
const scopeFor = (realm: string, user: string | undefined) => (realm === PUBLIC_REALM ? 'public' : user ? `user:${user}` : 'anonymous');
const expectedScope = (realm: string, options: LookupOptions | undefined) => options?.scope ?? scopeFor(realm, options?.user);

const source = new FakeSource();
const bed = useCacheTestBed({ source, realms: [PUBLIC_REALM, PRIVATE_REALM] });

/** A module whose definitions say which scope it was computed for. */
function define(url: string, deps: string[] = [], error?: { message: string; status?: number }): void {
  source.set(url, (_u, ctx) => ({ definitions: { computedFor: { scope: ctx.scope } }, deps, ...(error ? { error } : {}) }));
}

async function storedScopes(url: string): Promise<string[]> {
  const rows = await bed.db.query<{ scope: string }>(`SELECT scope FROM module_cache_entries WHERE url = $1 ORDER BY scope`, [url]);
  return rows.map((r) => r.scope);
}

describe('the scope of a call', () => {
  it('lookup(url) with no options goes through scopeFor too (it served the public entry)', async () => {
    const { lookup } = await bed.start({ scopeFor });
    const u = `${PRIVATE_REALM}fast.ts`;
    define(u);
    expect((await lookup.lookup(u, { scope: 'public' }))?.scope).toBe('public');
    // The second call used to take the hot path, which assumed 'public' whenever options were absent.
    const entry = await lookup.lookup(u);
    expect(entry?.scope).toBe('anonymous');
    expect(entry?.definitions).toEqual({ computedFor: { scope: 'anonymous' } });
    expect((await lookup.lookup(u, {}))?.scope).toBe('anonymous');
    expect((await lookup.lookup(u))?.scope).toBe('anonymous');
    expect(await storedScopes(u)).toEqual(['anonymous', 'public']);
  });

  it('every entry point, with and without options, with a user, concurrently: always the scope the rule gives', async () => {
    const [a, b] = [await bed.start({ scopeFor }), await bed.start({ scopeFor })];
    const optionSets: Array<LookupOptions | undefined> = [
      undefined,
      {},
      { user: 'alice' },
      { user: 'bob' },
      { scope: 'team:x' },
      { scope: 'public' },
      { scope: 'team:x', user: 'alice' },
    ];
    const urls = [PUBLIC_REALM, PRIVATE_REALM].flatMap((realm) => [0, 1, 2].map((i) => `${realm}m${i}.ts`));
    urls.forEach((u) => define(u));
    const check = (entry: ModuleCacheEntry | undefined, url: string, options: LookupOptions | undefined) => {
      const realm = url.startsWith(PUBLIC_REALM) ? PUBLIC_REALM : PRIVATE_REALM;
      if (entry === undefined) return; // lookupCached / lookupMany before anything was cached
      expect(entry.scope, `${url} ${JSON.stringify(options)}`).toBe(expectedScope(realm, options));
      expect(entry.definitions).toEqual({ computedFor: { scope: expectedScope(realm, options) } });
    };
    const calls = (lookup: CachingDefinitionLookup) =>
      urls.flatMap((url) =>
        optionSets.flatMap((options) => [
          lookup.lookup(url, options).then((e) => check(e, url, options)),
          lookup.lookupCached(url, options).then((e) => check(e, url, options)),
          lookup.lookupMany([url], options).then((m) => check(m.get(url), url, options)),
          lookup.lookupDefinition(url, 'computedFor', options).then((d) => {
            const realm = url.startsWith(PUBLIC_REALM) ? PUBLIC_REALM : PRIVATE_REALM;
            expect(d).toEqual({ scope: expectedScope(realm, options) });
          }),
        ]),
      );
    // Twice: cold (computations, coalescing) and warm (memory, the hot path).
    for (let round = 0; round < 2; round++) await Promise.all([...calls(a.lookup), ...calls(b.lookup)]);
    for (const url of urls) {
      const realm = url.startsWith(PUBLIC_REALM) ? PUBLIC_REALM : PRIVATE_REALM;
      const expected = [...new Set(optionSets.map((o) => expectedScope(realm, o)))].sort();
      expect(await storedScopes(url)).toEqual(expected);
    }
  });

  it("dependency errors attached in one user's scope never come from another user's entries", async () => {
    const { lookup } = await bed.start({ scopeFor });
    const dep = `${PRIVATE_REALM}dep.ts`;
    const top = `${PRIVATE_REALM}top.ts`;
    source.set(dep, (_u, ctx) => ({
      definitions: {},
      deps: [],
      ...(ctx.scope === 'user:alice' ? { error: { message: `alice's secret failure`, status: 500 } } : {}),
    }));
    define(top, [dep], { message: 'top failed', status: 500 });
    expect((await lookup.lookup(dep, { user: 'alice' }))?.error?.message).toBe(`alice's secret failure`);
    const bobs = await lookup.lookup(top, { user: 'bob' });
    expect(bobs?.scope).toBe('user:bob');
    expect(JSON.stringify(bobs?.error)).not.toContain('secret');
    // Alice's own gets it (the mechanism works in her scope).
    await bed.db.query(`DELETE FROM module_cache_entries WHERE url = $1`, [top]);
    const alices = await (await bed.start({ scopeFor })).lookup.lookup(top, { user: 'alice' });
    expect(alices?.error?.additionalErrors?.map((e) => e.message)).toEqual([`alice's secret failure`]);
  });
});

describe('scopes, users and URLs are stored exactly or refused', () => {
  it('random strings at every entry point: an exact round trip or a coded refusal, never a substitution', async () => {
    const { lookup } = await bed.start({ scopeFor: (realm, user) => (user === undefined ? 'public' : `u:${user}`), memory: false });
    const strings = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: 'grapheme', maxLength: 20 }),
      fc.constantFrom('\uD800', '\uFFFD', '\uDBFF\uDFFF', 'a\u0000b', '\u0001\u001f\u007f', 'é', '\uDC00x', 'x'.repeat(600)),
      fc.string({ unit: fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c)), maxLength: 8 }),
    );
    let tried = 0;
    const refusal = async (call: () => Promise<unknown>): Promise<string | undefined> => {
      try {
        await call();
        return undefined;
      } catch (error) {
        expect(error, String(error)).toBeInstanceOf(ModuleCacheError);
        return (error as ModuleCacheError).code;
      }
    };
    const url = `${PUBLIC_REALM}prop.ts`;
    define(url);
    await fc.assert(
      fc.asyncProperty(strings, async (s) => {
        tried++;
        // As a scope: stored and served as given, or refused.
        const asScope = await refusal(async () => {
          const entry = await lookup.lookup(url, { scope: s });
          expect(entry?.scope).toBe(s);
          expect((await lookup.lookupCached(url, { scope: s }))?.scope).toBe(s);
          const rows = await bed.db.query<{ scope: string }>(`SELECT scope FROM module_cache_entries WHERE url = $1 AND scope = $2`, [
            url,
            s,
          ]);
          expect(rows.map((r) => r.scope)).toEqual([s]);
        });
        if (asScope !== undefined) expect(asScope).toBe('E_INVALID_SCOPE');
        // As a user handed to scopeFor.
        const asUser = await refusal(async () => {
          const entry = await lookup.lookup(url, { user: s });
          expect(entry?.scope).toBe(`u:${s}`);
          expect((await lookup.lookupMany([url], { user: s })).get(url)?.scope).toBe(`u:${s}`);
        });
        if (asUser !== undefined) expect(asUser).toBe('E_INVALID_SCOPE');
        // In a module URL: a URL that parses is served under its canonical form, which looks itself up again.
        const asURL = await refusal(async () => {
          const input = `${PUBLIC_REALM}${s}`;
          const canonical = new URL(input);
          canonical.search = canonical.hash = '';
          const cached = await lookup.lookupCached(input);
          expect(cached).toBeUndefined();
          expect(await lookup.invalidate(input)).toEqual(expect.any(Array));
          expect(canonical.href.startsWith(PUBLIC_REALM)).toBe(true);
        });
        if (asURL !== undefined) expect(['E_INVALID_MODULE_URL', 'E_UNKNOWN_REALM']).toContain(asURL);
        // In a realm URL.
        const asRealm = await refusal(async () => {
          const realm = `https://example.test/r-${s}/`;
          lookup.registerRealm(realm);
          lookup.unregisterRealm(realm);
          await lookup.clearRealm(realm);
        });
        if (asRealm !== undefined) expect(asRealm).toBe('E_INVALID_REALM_URL');
        if (s.includes('\u0000') || /\p{Cs}/u.test(s)) {
          expect(asScope).toBe('E_INVALID_SCOPE');
          expect(asUser).toBe('E_INVALID_SCOPE');
          expect(asRealm).toBe('E_INVALID_REALM_URL');
        }
      }),
      { numRuns: 300 },
    );
    // The two strings the driver used to store as one row.
    await expect(lookup.lookup(url, { scope: '\uD800' })).rejects.toMatchObject({ code: 'E_INVALID_SCOPE' });
    expect((await lookup.lookup(url, { scope: '\uFFFD' }))?.scope).toBe('\uFFFD');
    await expect(lookup.lookup(`${PUBLIC_REALM}\uD800.ts`)).rejects.toMatchObject({ code: 'E_INVALID_MODULE_URL' });
    await expect(lookup.lookup(url, { user: 'x\uDC00' })).rejects.toMatchObject({ code: 'E_INVALID_SCOPE' });
    process.stdout.write(`[scopes] ${tried} random strings tried at every entry point: each stored exactly or refused with a code\n`);
  }, 120_000);
});
