import { describe, expect, it } from 'vitest';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';

/** Scopes that scopeFor derives from the realm and the user (scopes.test.ts checks the scope rule on every entry point). */
const REALM = 'https://example.test/scoped/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });
const url = (n: string) => `${REALM}${n}.ts`;

describe('scopes derived from realm and user (scopeFor)', () => {
  it('a public realm shares one entry across users, a private one gets one per user; an explicit scope wins', async () => {
    const PRIVATE = 'https://example.test/private/';
    const source = new FakeSource().define(url('shared')).define(`${PRIVATE}mine.ts`);
    const { lookup } = await bed.start({
      realms: [REALM, PRIVATE],
      source,
      scopeFor: async (realm, user) => (realm === PRIVATE ? `user:${user ?? 'anonymous'}` : 'public'),
    });
    for (const user of ['alice', 'bob', 'carol']) {
      await lookup.lookup(url('shared'), { user });
      await lookup.lookup(`${PRIVATE}mine.ts`, { user });
    }
    await lookup.lookup(url('shared'), { user: 'dave', scope: 'explicit' });
    const rows = await bed.db.query<{ url: string; scope: string }>(`SELECT url, scope FROM module_cache_entries ORDER BY url, scope`);
    expect(rows).toEqual([
      { url: `${PRIVATE}mine.ts`, scope: 'user:alice' },
      { url: `${PRIVATE}mine.ts`, scope: 'user:bob' },
      { url: `${PRIVATE}mine.ts`, scope: 'user:carol' },
      { url: url('shared'), scope: 'explicit' },
      { url: url('shared'), scope: 'public' },
    ]);
    expect(source.callsFor(url('shared'))).toBe(2);
  });

  it('a scopeFor that answers nonsense fails the lookup with a clear error, caching nothing', async () => {
    const { lookup } = await bed.start({ source: new FakeSource().define(url('s')), scopeFor: () => '' });
    await expect(lookup.lookup(url('s'), { user: 'x' })).rejects.toThrow(/scope returned by scopeFor must be a non-empty string/);
  });
});
