import { describe, expect, it } from 'vitest';
import { encodeInvalidations, InvalidRealmURLError, ModuleCacheOptionsError, parseInvalidation } from '../../src';
import { parseRealmURL } from '../../src/config/urls';
import { resolveModuleCacheOptions } from '../../src/config/options';

// One realm rule (parseRealmURL) on every path that takes a realm: the options, the lookup's
// registerRealm()/unregisterRealm()/clearRealm(), and the wire. Each row: a spelling, and its
// canonical form or null when every path refuses it.
const CASES: Array<[string, string | null]> = [
  ['https://h.test/r/', 'https://h.test/r/'],
  ['http://h.test/', 'http://h.test/'],
  ['HTTPS://H.Test/r/', 'https://h.test/r/'],
  ['https://h.test:443/r/', 'https://h.test/r/'],
  ['https://h.test/a/../r/', 'https://h.test/r/'],
  ['https://h.test/é/', 'https://h.test/%C3%A9/'],
  [' https://h.test/r/', 'https://h.test/r/'],
  ['https://h.test/r', null],
  ['https://h.test', null],
  ['https://h.test/r/?x=1', null],
  ['https://h.test/r/?', null],
  ['https://h.test/r/#', null],
  ['https://h.test/r/#x/', null],
  ['https://h.test/r/?x=/', null],
  ['ftp://h.test/r/', null],
  ['file:///srv/r/', null],
  ['/r/', null],
  ['', null],
  ['https://h.test/\u0000/', null],
  ['https://h.test/\uD800/', null],
];

const source = { load: async () => null };
const fromOptions = (realm: string) => resolveModuleCacheOptions({ source, realms: [realm], prefixes: { '@p/': realm } });
const fromWire = (realm: string) => parseInvalidation(JSON.stringify({ k: 'realm', r: realm, o: 'peer' }));

describe('the realm rule', () => {
  it.each(CASES)('%j: the options and registerRealm() agree (normalised, or both refuse)', (spelling, canonical) => {
    if (canonical === null) {
      expect(() => parseRealmURL(spelling)).toThrow(InvalidRealmURLError);
      expect(() => fromOptions(spelling)).toThrow(ModuleCacheOptionsError);
      expect(() => fromOptions(spelling)).toThrow(
        /realms\.0: must be an absolute http\(s\) URL ending with "\/" and without query or hash/,
      );
      expect(() => fromOptions(spelling)).toThrow(/prefixes\.@p\/: must be an absolute http\(s\) URL/);
    } else {
      expect(parseRealmURL(spelling)).toBe(canonical);
      expect(fromOptions(spelling)).toMatchObject({ realms: [canonical], prefixes: { '@p/': canonical } });
    }
  });

  it.each(CASES)('%j: the wire takes only the canonical form (payloads are untrusted: parsed strictly)', (spelling, canonical) => {
    const result = fromWire(spelling);
    expect(result.ok).toBe(canonical === spelling);
    if (canonical === null) return;
    // Whatever a caller may spell, what the cache sends is canonical, and so is heard.
    expect(fromWire(canonical)).toEqual({ ok: true, message: { kind: 'realm', realm: canonical, origin: 'peer' } });
    const [payload] = encodeInvalidations({ kind: 'realm', realm: canonical }, { origin: 'me' });
    expect(parseInvalidation(payload).ok).toBe(true);
    if (canonical !== spelling)
      expect(() => encodeInvalidations({ kind: 'realm', realm: spelling }, { origin: 'me' })).toThrow(InvalidRealmURLError);
  });

  it('counts two spellings of one realm in the options once', () => {
    expect(resolveModuleCacheOptions({ source, realms: ['HTTPS://h.test/r/', 'https://h.test/r/'] }).realms).toEqual(['https://h.test/r/']);
  });
});
