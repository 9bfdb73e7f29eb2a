import { describe, expect, it } from 'vitest';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';

/** Prefix identifiers (options.prefixes): '@acme/base/x.ts' names a module of the realm the prefix maps to. */
const REALM = 'https://example.test/prefixed/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });
const url = (n: string) => `${REALM}${n}.ts`;

describe('prefix identifiers', () => {
  it('resolves prefix identifiers for lookups, invalidations and stored dependencies', async () => {
    const source = new FakeSource().define(url('card'), ['@acme/base/field.ts']).define(url('field'));
    const { lookup } = await bed.start({ source, prefixes: { '@acme/base/': REALM } });
    const entry = await lookup.lookup('@acme/base/card.ts');
    expect(entry?.url).toBe(url('card'));
    expect(entry?.deps).toEqual([`${REALM}field`]);
    expect(await lookup.invalidate('@acme/base/field.ts')).toEqual(expect.arrayContaining([url('field'), url('card')]));
  });
});
