import fc from 'fast-check';
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DeadlineError, ModuleCacheError } from '../../src/errors';
import { deadline, withTimeout } from '../../src/timeout';
import { encodeWakeUp, isSyncPayload, parseSync, parseWakeUp, syncMarkerAround, syncMarkerSql } from '../../src/wire';
import { isSignedBy, sign } from '../../src/wire/signing';

const SECRET = 'a-signing-secret-of-some-length';
const TOKEN = '0b7c2f5e-6a1d-4c3b-9e8f-1a2b3c4d5e6f';
/** What the database does with the halves: `before || token::text || after`. */
const splice = ({ before, after }: { before: string; after: string }, token = TOKEN) => `${before}${token}${after}`;

describe('signing', () => {
  it('is the hex HMAC-SHA256 of the JSON of the signed parts, and verifies only its own parts and secret', () => {
    const parts = ['module', 'https://h/r/', ['https://h/r/a'], 'o'];
    const s = sign(parts, SECRET);
    expect(s).toBe(createHmac('sha256', SECRET).update(JSON.stringify(parts)).digest('hex'));
    expect(isSignedBy(parts, SECRET, s)).toBe(true);
    expect(isSignedBy(parts, `${SECRET}x`, s)).toBe(false);
    expect(isSignedBy(['realm', ...parts.slice(1)], SECRET, s)).toBe(false);
  });
});

describe('sync markers', () => {
  it('round trip through the token splice, signed or not', () => {
    const seqs = fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }).map(String);
    const origin = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }).filter((s) => !/\p{Cc}/u.test(s));
    fc.assert(
      fc.property(seqs, origin, fc.option(fc.constant(SECRET), { nil: undefined }), (seq, o, secret) => {
        const payload = splice(syncMarkerAround(seq, { origin: o, signingSecret: secret }));
        expect(isSyncPayload(payload)).toBe(true);
        expect(parseSync(payload, { signingSecret: secret })).toEqual({ seq, origin: o, token: TOKEN });
      }),
    );
  });

  it('write the documented shape, signed over ["sync", q, null, o] (the token is the database\'s)', () => {
    expect(splice(syncMarkerAround('42', { origin: 'p' }))).toBe(`{"k":"sync","q":"42","o":"p","t":"${TOKEN}"}`);
    const s = createHmac('sha256', SECRET)
      .update(JSON.stringify(['sync', '42', null, 'p']))
      .digest('hex');
    expect(splice(syncMarkerAround('42', { origin: 'p', signingSecret: SECRET }))).toBe(
      `{"k":"sync","q":"42","o":"p","t":"${TOKEN}","s":"${s}"}`,
    );
    expect(syncMarkerSql('$2', 'l.token', '$3')).toBe('$2 || l.token::text || $3');
  });

  it('reject what is not exactly a marker, and never throw', () => {
    const signed = splice(syncMarkerAround('42', { origin: 'p', signingSecret: SECRET }));
    expect(parseSync(splice(syncMarkerAround('42', { origin: 'p' })), { signingSecret: SECRET })).toHaveProperty('reason');
    expect(parseSync(signed, { signingSecret: `${SECRET}x` })).toEqual({ reason: 'sync marker signature mismatch' });
    expect(parseSync(signed.replace('"q":"42"', '"q":"43"'), { signingSecret: SECRET })).toHaveProperty('reason');
    expect(parseSync(splice(syncMarkerAround('42', { origin: 'p' }), 'not-a-token'))).toEqual({ reason: 'sync marker without a token' });
    expect(parseSync(splice(syncMarkerAround('x', { origin: 'p' })))).toEqual({ reason: 'malformed sync marker' });
    expect(parseSync('{"k":"sync","q":"1","o":"p","t":"' + TOKEN + '","x":1}')).toEqual({ reason: 'unexpected key in sync marker' });
    fc.assert(fc.property(fc.string(), (tail) => typeof parseSync(`{"k":"sync",${tail}`) === 'object'));
  });
});

describe('wake-ups', () => {
  it('round trip any claim key (a signed 64-bit integer)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (key) => {
        expect(parseWakeUp(encodeWakeUp(String(key), 'proc-1'))).toBe(String(key));
      }),
    );
    expect(encodeWakeUp('-12', 'relay-3')).toBe('{"h":"-12","o":"relay-3"}');
  });

  it('ignore anything else on the channel', () => {
    for (const p of [
      '',
      '{"h":"12"}',
      '{"h":12,"o":"p"}',
      '{"h":"12","o":""}',
      '{"h":"1x","o":"p"}',
      '{"o":"p","h":"12"}',
      '{"h":"12","o":"p","x":1}',
    ])
      expect(parseWakeUp(p)).toBeUndefined();
  });
});

describe('deadline', () => {
  it('rejects with a DeadlineError (E_DEADLINE) naming the wait, matched by class', async () => {
    const timeout = deadline(5, 'a test wait');
    const error = await timeout.expired.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeadlineError);
    expect(error).toBeInstanceOf(ModuleCacheError);
    expect(error).toMatchObject({ code: 'E_DEADLINE', what: 'a test wait', ms: 5, message: 'a test wait: no answer within 5 ms' });
    await expect(withTimeout(new Promise(() => undefined), 5, 'x')).rejects.toBeInstanceOf(DeadlineError);
  });

  it('still takes a factory for waits whose expiry is a public error of its own', async () => {
    const mine = new Error('mine');
    await expect(deadline(5, () => mine).expired).rejects.toBe(mine);
  });
});
