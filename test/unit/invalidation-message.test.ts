import fc from 'fast-check';
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  MAX_PAYLOAD_BYTES,
  encodeInvalidations,
  encodeProbe,
  isProbePayload,
  parseInvalidation,
  type InvalidationMessage,
  type InvalidationTarget,
} from '../../src/wire';

const REALM = 'https://host.example/realm/';
const ORIGIN = 'proc-1';
const SECRET = 'a-signing-secret-of-some-length';
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

function parseAll(payloads: string[], signingSecret?: string): InvalidationMessage[] {
  return payloads.map((p) => {
    const result = parseInvalidation(p, { signingSecret });
    if (!result.ok) throw new Error(`own payload rejected (${result.reason}): ${p}`);
    return result.message;
  });
}

const sign = (parts: unknown[]) => createHmac('sha256', SECRET).update(JSON.stringify(parts)).digest('hex');

// Path segments mixing ASCII with multi-byte text (CJK, accents, emoji incl. ZWJ sequences and skin tones).
const unicodeSegment = fc.string({
  unit: fc.constantFrom('a', 'Z', '-', '_', '.', '%20', 'é', 'ß', '日', '本', '語', '中', '文', '한', '😀', '👍🏽', '🏳️‍🌈', 'Ω', '\u{10348}'),
  minLength: 1,
  maxLength: 30,
});
// Anything printable after a valid base still parses as a URL; control characters are rejected by design.
const graphemeSegment = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter((s) => !/\p{Cc}/u.test(s));
const moduleUrl = fc.oneof(
  fc.webUrl({ withQueryParameters: true, withFragments: true }),
  fc
    .tuple(fc.webUrl(), fc.array(fc.oneof(unicodeSegment, graphemeSegment), { minLength: 1, maxLength: 6 }))
    .map(([base, segments]) => `${base}/${segments.join('/')}`)
    // The URL parser strips a trailing space, so such a string is not canonical and is refused by design.
    .filter((u) => !u.endsWith(' ')),
  // Some long ones, to exercise degradation under small budgets.
  fc.tuple(fc.webUrl(), fc.integer({ min: 100, max: 600 })).map(([base, n]) => `${base}/${'長'.repeat(n)}.gts`),
);
// A realm as the cache holds it: canonical (percent-encoded), the only form the wire takes.
const realmSpelling = fc
  .tuple(fc.webUrl({ validSchemes: ['http', 'https'] }), fc.array(unicodeSegment, { maxLength: 3 }))
  .map(([base, segments]) => {
    const u = new URL(base);
    return `${u.protocol}//${u.host}/${segments.map((s) => `${s}/`).join('')}`;
  });
const realm = realmSpelling.map((spelling) => new URL(spelling).href);
const origin = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }).filter((s) => !/\p{Cc}/u.test(s));
const secret = fc.option(fc.string({ minLength: 16, maxLength: 40 }), { nil: undefined });
const maxBytes = fc.oneof(fc.constant(MAX_PAYLOAD_BYTES), fc.constant(300), fc.integer({ min: 250, max: 7999 }));

describe('encodeInvalidations / parseInvalidation round trip (properties)', () => {
  it('every payload parses back, stays within the budget, and the URLs come back exactly (or degrade to one realm message)', () => {
    fc.assert(
      fc.property(realm, fc.array(moduleUrl, { maxLength: 80 }), origin, secret, maxBytes, (r, urls, o, s, max) => {
        const payloads = encodeInvalidations({ kind: 'module', realm: r, urls }, { origin: o, signingSecret: s, maxBytes: max });
        for (const p of payloads) expect(bytes(p)).toBeLessThanOrEqual(max);
        const messages = parseAll(payloads, s);
        expect(messages.every((m) => m.origin === o)).toBe(true);

        // A URL fits alone iff encoding it alone yields a module payload.
        const fitsAlone = new Set(
          urls.filter((u) =>
            encodeInvalidations({ kind: 'module', realm: r, urls: [u] }, { origin: o, signingSecret: s, maxBytes: max })[0]?.startsWith(
              '{"k":"module"',
            ),
          ),
        );
        const carried = messages.flatMap((m) => (m.kind === 'module' ? (expect(m.realm).toBe(r), m.urls) : []));
        expect(new Set(carried)).toEqual(fitsAlone);
        expect(carried.length).toBe(fitsAlone.size); // no URL sent twice

        const coarse = messages.filter((m) => m.kind !== 'module');
        expect(coarse.length).toBe(fitsAlone.size < new Set(urls).size ? 1 : 0);
        for (const m of coarse) if (m.kind === 'realm') expect(m.realm).toBe(r);
        if (urls.length === 0) expect(payloads).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('packs greedily: the first URL of each module payload would not have fit into the previous one', () => {
    fc.assert(
      fc.property(realm, fc.array(moduleUrl, { minLength: 1, maxLength: 120 }), maxBytes, (r, urls, max) => {
        const payloads = encodeInvalidations({ kind: 'module', realm: r, urls }, { origin: ORIGIN, maxBytes: max }).filter((p) =>
          p.startsWith('{"k":"module"'),
        );
        const lists = parseAll(payloads).map((m) => (m.kind === 'module' ? m.urls : []));
        for (let i = 1; i < payloads.length; i++) {
          expect(bytes(payloads[i - 1]) + 1 + bytes(JSON.stringify(lists[i][0]))).toBeGreaterThan(max);
        }
      }),
    );
  });

  it('realm and global targets round trip within any budget', () => {
    fc.assert(
      fc.property(realm, origin, secret, maxBytes, (r, o, s, max) => {
        const options = { origin: o, signingSecret: s, maxBytes: max };
        const [realmMessage, ...rest] = parseAll(encodeInvalidations({ kind: 'realm', realm: r }, options), s);
        expect(rest).toEqual([]);
        expect(realmMessage).toEqual(
          realmMessage.kind === 'realm' ? { kind: 'realm', realm: r, origin: o } : { kind: 'global', origin: o },
        );
        expect(parseAll(encodeInvalidations({ kind: 'global' }, options), s)).toEqual([{ kind: 'global', origin: o }]);
      }),
    );
  });
});

describe('realms on the wire (properties)', () => {
  it('a realm spelled otherwise than canonically is rejected by the parser and refused by the encoder', () => {
    fc.assert(
      fc.property(realmSpelling, (spelling) => {
        const canonical = new URL(spelling).href;
        fc.pre(canonical !== spelling);
        expect(parseInvalidation(JSON.stringify({ k: 'realm', r: spelling, o: ORIGIN })).ok).toBe(false);
        expect(() => encodeInvalidations({ kind: 'realm', realm: spelling }, { origin: ORIGIN })).toThrow(/realm/);
      }),
    );
  });
});

describe('parseInvalidation never throws (properties)', () => {
  it('on arbitrary values', () => {
    fc.assert(
      fc.property(fc.anything({ withBigInt: true, withMap: true, withSet: true, withTypedArray: true }), secret, (v, s) => {
        expect(parseInvalidation(v, { signingSecret: s }).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('on arbitrary strings and JSON text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: 'binary' }),
          fc.json(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        secret,
        (p, s) => {
          const result = parseInvalidation(p, { signingSecret: s });
          expect(typeof result.ok).toBe('boolean');
          if (!result.ok) expect(result.reason.length).toBeGreaterThan(0);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('on near-miss objects built from the real keys with arbitrary values', () => {
    const value = fc.oneof(
      fc.constantFrom('module', 'realm', 'global', REALM, `${REALM}a.gts`, ORIGIN, '', [], [`${REALM}a.gts`]),
      fc.jsonValue(),
    );
    const nearMiss = fc.dictionary(fc.constantFrom('k', 'r', 'm', 'o', 's', 'x', '__proto__', 'constructor'), value, { maxKeys: 6 });
    fc.assert(
      fc.property(nearMiss, secret, (obj, s) => {
        expect(() => parseInvalidation(JSON.stringify(obj), { signingSecret: s })).not.toThrow();
      }),
      { numRuns: 1000 },
    );
  });

  it('on valid payloads with one character changed: a signed one is then rejected or unchanged in meaning', () => {
    const payloads = encodeInvalidations(
      { kind: 'module', realm: REALM, urls: [`${REALM}a.gts`, `${REALM}日本/b.ts`] },
      { origin: ORIGIN, signingSecret: SECRET },
    );
    fc.assert(
      fc.property(fc.nat(), fc.string({ minLength: 1, maxLength: 1 }), (i, c) => {
        const p = payloads[0];
        const at = i % p.length;
        const mutated = p.slice(0, at) + c + p.slice(at + 1);
        const result = parseInvalidation(mutated, { signingSecret: SECRET });
        if (result.ok) expect(result.message).toEqual(parseAll([p], SECRET)[0]);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('encodeInvalidations (examples)', () => {
  it('writes each documented shape exactly', () => {
    expect(encodeInvalidations({ kind: 'module', realm: REALM, urls: [`${REALM}a.gts`, `${REALM}b`] }, { origin: ORIGIN })).toEqual([
      `{"k":"module","r":"${REALM}","m":["${REALM}a.gts","${REALM}b"],"o":"proc-1"}`,
    ]);
    expect(encodeInvalidations({ kind: 'realm', realm: REALM }, { origin: ORIGIN })).toEqual([`{"k":"realm","r":"${REALM}","o":"proc-1"}`]);
    expect(encodeInvalidations({ kind: 'global' }, { origin: ORIGIN })).toEqual(['{"k":"global","o":"proc-1"}']);
  });

  it('adds an HMAC-SHA256 over [k, r, m, o] when signing', () => {
    const [p] = encodeInvalidations({ kind: 'module', realm: REALM, urls: [`${REALM}a`] }, { origin: ORIGIN, signingSecret: SECRET });
    expect(JSON.parse(p)).toEqual({
      k: 'module',
      r: REALM,
      m: [`${REALM}a`],
      o: ORIGIN,
      s: sign(['module', REALM, [`${REALM}a`], ORIGIN]),
    });
    const [g] = encodeInvalidations({ kind: 'global' }, { origin: ORIGIN, signingSecret: SECRET });
    expect(JSON.parse(g).s).toBe(sign(['global', null, null, ORIGIN]));
  });

  it('encodes an empty URL list as no payloads, and de-duplicates URLs', () => {
    expect(encodeInvalidations({ kind: 'module', realm: REALM, urls: [] }, { origin: ORIGIN })).toEqual([]);
    const payloads = encodeInvalidations({ kind: 'module', realm: REALM, urls: [`${REALM}a`, `${REALM}a`] }, { origin: ORIGIN });
    expect(parseAll(payloads)).toEqual([{ kind: 'module', realm: REALM, urls: [`${REALM}a`], origin: ORIGIN }]);
  });

  it('packs 1,000 typical URLs into about totalBytes / 7000 payloads', () => {
    const urls = Array.from({ length: 1000 }, (_, i) => `${REALM}components/section-${i % 37}/card-definition-${i}.gts`);
    const payloads = encodeInvalidations({ kind: 'module', realm: REALM, urls }, { origin: ORIGIN, signingSecret: SECRET });
    const urlBytes = urls.reduce((sum, u) => sum + bytes(JSON.stringify(u)) + 1, 0);
    const fixed =
      bytes(encodeInvalidations({ kind: 'module', realm: REALM, urls: [urls[0]] }, { origin: ORIGIN, signingSecret: SECRET })[0]) -
      bytes(JSON.stringify(urls[0]));
    expect(payloads.length).toBeLessThanOrEqual(Math.ceil(urlBytes / (MAX_PAYLOAD_BYTES - fixed)) + 1);
    expect(payloads.length).toBeGreaterThan(1);
    for (const p of payloads) expect(bytes(p)).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    expect(parseAll(payloads, SECRET).flatMap((m) => (m.kind === 'module' ? m.urls : []))).toEqual(urls);
  });

  it('counts bytes, not characters: multi-byte URLs split earlier', () => {
    const urls = Array.from({ length: 400 }, (_, i) => `${REALM}日本語/😀-${i}.gts`);
    const payloads = encodeInvalidations({ kind: 'module', realm: REALM, urls }, { origin: ORIGIN });
    expect(payloads.length).toBeGreaterThan(1);
    for (const p of payloads) {
      expect(bytes(p)).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
      expect(bytes(p)).toBeGreaterThan(p.length); // the budget is UTF-8 bytes, which exceed UTF-16 units here
    }
  });

  it('degrades URLs too long for any payload to a single realm message, keeping the others', () => {
    const long1 = `${REALM}${'x'.repeat(8000)}.gts`;
    const long2 = `${REALM}${'長'.repeat(3000)}.gts`;
    const payloads = encodeInvalidations({ kind: 'module', realm: REALM, urls: [long1, `${REALM}a.gts`, long2] }, { origin: ORIGIN });
    expect(parseAll(payloads)).toEqual([
      { kind: 'module', realm: REALM, urls: [`${REALM}a.gts`], origin: ORIGIN },
      { kind: 'realm', realm: REALM, origin: ORIGIN },
    ]);
  });

  it('degrades a realm too long for any payload to a global message', () => {
    const longRealm = `https://host.example/${'r'.repeat(400)}/`;
    const options = { origin: ORIGIN, maxBytes: 300 };
    expect(parseAll(encodeInvalidations({ kind: 'realm', realm: longRealm }, options))).toEqual([{ kind: 'global', origin: ORIGIN }]);
    expect(parseAll(encodeInvalidations({ kind: 'module', realm: longRealm, urls: [`${longRealm}a`] }, options))).toEqual([
      { kind: 'global', origin: ORIGIN },
    ]);
  });

  it('refuses inputs the parser would reject', () => {
    expect(() => encodeInvalidations({ kind: 'module', realm: REALM, urls: ['/relative.gts'] }, { origin: ORIGIN })).toThrow(
      /absolute http\(s\) URL/,
    );
    expect(() => encodeInvalidations({ kind: 'module', realm: REALM, urls: ['ftp://host/a'] }, { origin: ORIGIN })).toThrow(
      /absolute http\(s\) URL/,
    );
    expect(() => encodeInvalidations({ kind: 'realm', realm: 'https://host/no-slash' }, { origin: ORIGIN })).toThrow(/ending with "\/"/);
    expect(() => encodeInvalidations({ kind: 'global' }, { origin: '' })).toThrow(/origin/);
    expect(() => encodeInvalidations({ kind: 'global' }, { origin: ORIGIN, maxBytes: 8000 })).toThrow(/maxBytes/);
    expect(() => encodeInvalidations({ kind: 'global' }, { origin: ORIGIN, maxBytes: 20 })).toThrow(/maxBytes/);
  });
});

describe('parseInvalidation (examples)', () => {
  it('accepts each documented shape', () => {
    expect(parseInvalidation(`{"k":"module","r":"${REALM}","m":["${REALM}a.gts"],"o":"p"}`)).toEqual({
      ok: true,
      message: { kind: 'module', realm: REALM, urls: [`${REALM}a.gts`], origin: 'p' },
    });
    expect(parseInvalidation(`{"k":"realm","r":"${REALM}","o":"p"}`)).toEqual({
      ok: true,
      message: { kind: 'realm', realm: REALM, origin: 'p' },
    });
    expect(parseInvalidation('{"k":"global","o":"p"}')).toEqual({ ok: true, message: { kind: 'global', origin: 'p' } });
  });

  const rejects: Array<[string, unknown, RegExp]> = [
    ['a non-string', { k: 'global', o: 'p' }, /not a string/],
    ['an oversized payload', `{"k":"global","o":"p","pad":"${'x'.repeat(8000)}"}`, /exceeds 7999 bytes/],
    ['an oversized multi-byte payload under 7999 characters', `{"k":"global","o":"${'é'.repeat(4000)}"}`, /exceeds 7999 bytes/],
    ['non-JSON', 'module:https://host/realm/:https://host/realm/a', /not JSON/],
    ['a JSON array', '["global"]', /not a JSON object/],
    ['JSON null', 'null', /not a JSON object/],
    ['an unknown kind', '{"k":"probe","o":"p"}', /unknown kind/],
    ['a missing kind', '{"o":"p"}', /kind/],
    ['an extra key', '{"k":"global","o":"p","x":1}', /unexpected key "x"/],
    ['a key of another shape', `{"k":"global","r":"${REALM}","o":"p"}`, /unexpected key "r"/],
    ['a __proto__ key', '{"k":"global","o":"p","__proto__":{}}', /unexpected key/],
    ['an empty origin', '{"k":"global","o":""}', /origin/],
    ['a non-string origin', '{"k":"global","o":7}', /origin/],
    ['a realm without trailing slash', '{"k":"realm","r":"https://host/realm","o":"p"}', /realm/],
    ['a relative realm', '{"k":"realm","r":"/realm/","o":"p"}', /realm/],
    ['an empty realm', '{"k":"realm","r":"","o":"p"}', /realm/],
    ['a realm with a query', '{"k":"realm","r":"https://host/realm/?x=/","o":"p"}', /realm/],
    ['a realm with a hash', '{"k":"realm","r":"https://host/realm/#x/","o":"p"}', /realm/],
    ['a realm not in canonical form', '{"k":"realm","r":"HTTPS://host/realm/","o":"p"}', /realm/],
    ['a realm with an unencoded character', '{"k":"realm","r":"https://host/réalm/","o":"p"}', /realm/],
    ['an empty URL list', `{"k":"module","r":"${REALM}","m":[],"o":"p"}`, /non-empty URL list/],
    ['a URL list that is a string', `{"k":"module","r":"${REALM}","m":"${REALM}a","o":"p"}`, /non-empty URL list/],
    ['a relative URL', `{"k":"module","r":"${REALM}","m":["a.gts"],"o":"p"}`, /invalid URL/],
    ['a non-http URL', `{"k":"module","r":"${REALM}","m":["file:///etc/passwd"],"o":"p"}`, /invalid URL/],
    ['an empty URL', `{"k":"module","r":"${REALM}","m":[""],"o":"p"}`, /invalid URL/],
    ['a URL with a control character', `{"k":"module","r":"${REALM}","m":["${REALM}a\\nb"],"o":"p"}`, /invalid URL/],
    ['a non-string URL', `{"k":"module","r":"${REALM}","m":[1],"o":"p"}`, /invalid URL/],
    ['a malformed signature', '{"k":"global","o":"p","s":"zz"}', /signature/],
  ];
  it.each(rejects)('rejects %s', (_name, payload, reason) => {
    const result = parseInvalidation(payload);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });

  it("accepts the reference's payloads (the same shapes without an origin) when no secret is configured", () => {
    expect(parseInvalidation(`{"k":"module","r":"${REALM}","m":["${REALM}a.gts"]}`)).toEqual({
      ok: true,
      message: { kind: 'module', realm: REALM, urls: [`${REALM}a.gts`] },
    });
    expect(parseInvalidation(`{"k":"realm","r":"${REALM}"}`)).toEqual({ ok: true, message: { kind: 'realm', realm: REALM } });
    expect(parseInvalidation('{"k":"global"}')).toEqual({ ok: true, message: { kind: 'global' } });
  });

  it("accepts the reference's prefix-form realms and their URLs as given (its listener test's payloads)", () => {
    const urls = ['@cardstack/base/card-api.gts', '@cardstack/base/string.gts', '@cardstack/base/number.gts'];
    expect(parseInvalidation(JSON.stringify({ k: 'module', r: '@cardstack/base/', m: urls }))).toEqual({
      ok: true,
      message: { kind: 'module', realm: '@cardstack/base/', urls },
    });
    expect(parseInvalidation('{"k":"realm","r":"@cardstack/base/"}')).toEqual({
      ok: true,
      message: { kind: 'realm', realm: '@cardstack/base/' },
    });
    // Mixed forms, and our own shape with an origin: the listener resolves what is prefixed.
    expect(parseInvalidation(`{"k":"module","r":"@cardstack/base/","m":["@cardstack/base/a.gts","${REALM}b.gts"],"o":"p"}`)).toEqual({
      ok: true,
      message: { kind: 'module', realm: '@cardstack/base/', urls: ['@cardstack/base/a.gts', `${REALM}b.gts`], origin: 'p' },
    });
  });

  const prefixRejects: Array<[string, string]> = [
    ['a prefix realm without trailing slash', '{"k":"realm","r":"@cardstack/base"}'],
    ['a prefix realm with whitespace', '{"k":"realm","r":"@cardstack/ba se/"}'],
    ['a prefix realm with a control character', '{"k":"realm","r":"@cardstack/\\u0001base/"}'],
    ['a prefix realm starting with "/"', '{"k":"realm","r":"/cardstack/base/"}'],
    ['a scheme that is not http(s)', '{"k":"realm","r":"file:///etc/"}'],
    ['a prefixed URL without a prefix', '{"k":"module","r":"@cardstack/base/","m":["card-api.gts"]}'],
    ['a prefixed URL with whitespace', '{"k":"module","r":"@cardstack/base/","m":["@cardstack/base/card api.gts"]}'],
    ['a prefixed URL with a control character', '{"k":"module","r":"@cardstack/base/","m":["@cardstack/base/a\\nb.gts"]}'],
    ['an empty prefixed URL', '{"k":"module","r":"@cardstack/base/","m":[""]}'],
  ];
  it.each(prefixRejects)('rejects %s', (_name, payload) => {
    expect(JSON.parse(payload)).toBeTypeOf('object');
    expect(parseInvalidation(payload).ok).toBe(false);
  });

  it("writes the realm server's keys only in the 'boxel' format (and its alias 'seed'), and refuses to sign it", () => {
    for (const format of ['boxel', 'seed'] as const) {
      expect(encodeInvalidations({ kind: 'realm', realm: REALM }, { origin: ORIGIN, format })).toEqual([
        JSON.stringify({ k: 'realm', r: REALM }),
      ]);
    }
    const payloads = [
      ...encodeInvalidations({ kind: 'module', realm: REALM, urls: [`${REALM}a.gts`, `${REALM}b`] }, { origin: ORIGIN, format: 'boxel' }),
      ...encodeInvalidations({ kind: 'realm', realm: REALM }, { origin: ORIGIN, format: 'boxel' }),
      ...encodeInvalidations({ kind: 'global' }, { origin: ORIGIN, format: 'boxel' }),
    ];
    expect(payloads).toEqual([
      `{"k":"module","r":"${REALM}","m":["${REALM}a.gts","${REALM}b"]}`,
      `{"k":"realm","r":"${REALM}"}`,
      '{"k":"global"}',
    ]);
    expect(payloads.map((p) => parseInvalidation(p).ok)).toEqual([true, true, true]);
    expect(() => encodeInvalidations({ kind: 'global' }, { origin: ORIGIN, format: 'boxel', signingSecret: SECRET })).toThrow(
      /no signature/,
    );
  });

  it('ignores a well-formed signature when no secret is configured', () => {
    const [p] = encodeInvalidations({ kind: 'global' }, { origin: ORIGIN, signingSecret: SECRET });
    expect(parseInvalidation(p)).toEqual({ ok: true, message: { kind: 'global', origin: ORIGIN } });
  });

  describe('with a signing secret', () => {
    const url = `${REALM}a.gts`;
    const [signed] = encodeInvalidations({ kind: 'module', realm: REALM, urls: [url] }, { origin: ORIGIN, signingSecret: SECRET });

    it("rejects a payload without an origin (signed payloads always carry one), so the 'boxel' format is refused", () => {
      expect(parseInvalidation('{"k":"global"}', { signingSecret: SECRET })).toEqual({
        ok: false,
        reason: 'missing or invalid origin "o"',
      });
    });

    it('accepts a correctly signed payload', () => {
      expect(parseInvalidation(signed, { signingSecret: SECRET })).toEqual({
        ok: true,
        message: { kind: 'module', realm: REALM, urls: [url], origin: ORIGIN },
      });
    });

    it('rejects an unsigned payload', () => {
      const [unsigned] = encodeInvalidations({ kind: 'module', realm: REALM, urls: [url] }, { origin: ORIGIN });
      expect(parseInvalidation(unsigned, { signingSecret: SECRET })).toEqual({ ok: false, reason: expect.stringMatching(/unsigned/) });
    });

    it('rejects a payload signed with another secret (forged)', () => {
      const [forged] = encodeInvalidations(
        { kind: 'module', realm: REALM, urls: [url] },
        { origin: ORIGIN, signingSecret: 'not-the-real-secret-at-all' },
      );
      expect(parseInvalidation(forged, { signingSecret: SECRET })).toEqual({ ok: false, reason: 'signature mismatch' });
    });

    it('rejects a payload whose URL, realm, kind or origin was tampered with', () => {
      const wire = JSON.parse(signed);
      const tampered = [
        { ...wire, m: [`${REALM}b.gts`] },
        { ...wire, m: [url, `${REALM}b.gts`] },
        { ...wire, r: 'https://host.example/other/' },
        { ...wire, o: 'someone-else' },
        { k: 'realm', r: wire.r, o: wire.o, s: wire.s },
      ];
      for (const t of tampered)
        expect(parseInvalidation(JSON.stringify(t), { signingSecret: SECRET })).toEqual({ ok: false, reason: 'signature mismatch' });
    });

    it('rejects a signature that is not a string', () => {
      expect(parseInvalidation(JSON.stringify({ ...JSON.parse(signed), s: 42 }), { signingSecret: SECRET }).ok).toBe(false);
    });
  });

  it('round trips targets of every kind (typed API)', () => {
    const targets: InvalidationTarget[] = [
      { kind: 'module', realm: REALM, urls: [`${REALM}x`] },
      { kind: 'realm', realm: REALM },
      { kind: 'global' },
    ];
    for (const target of targets)
      expect(parseAll(encodeInvalidations(target, { origin: ORIGIN }))).toEqual([{ ...target, origin: ORIGIN }]);
  });
});

describe('probe payloads', () => {
  it('are unique, recognised as probes, and rejected as invalidations', () => {
    const a = encodeProbe(ORIGIN);
    expect(a).toMatch(/^\{"k":"probe","o":"proc-1","n":"[0-9a-f]{24}"\}$/);
    expect(encodeProbe(ORIGIN)).not.toBe(a);
    expect(isProbePayload(a)).toBe(true);
    expect(parseInvalidation(a)).toEqual({ ok: false, reason: 'unknown kind "probe"' });
  });

  it('are not confused with invalidations or near misses, and detection never throws', () => {
    for (const p of encodeInvalidations({ kind: 'module', realm: REALM, urls: [`${REALM}a`] }, { origin: ORIGIN }))
      expect(isProbePayload(p)).toBe(false);
    expect(isProbePayload('{"k":"probe","o":"p"}')).toBe(false);
    expect(isProbePayload('{"k":"probe","o":"p","n":1}')).toBe(false);
    expect(isProbePayload('{"k":"probe","o":"p","n":"x","x":1}')).toBe(false);
    expect(isProbePayload('{"k":"probe",')).toBe(false);
    fc.assert(fc.property(fc.string(), (tail) => typeof isProbePayload(`{"k":"probe",${tail}`) === 'boolean'));
  });
});
