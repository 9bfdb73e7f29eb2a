import fc from 'fast-check';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_PAYLOAD_BYTES, encodeInvalidations, type WireFormat } from '../../src/wire';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { parseRealmURL } from '../../src/config/urls';
import { waitFor } from '../support/wait';

/**
 * TS ↔ SQL parity of the unsigned invalidation payloads. Unsigned module invalidations are
 * encoded by the database (`module_cache_module_payloads`, migration 1764300000000), signed ones
 * and every realm/global message by `encodeInvalidations`: peers must not be able to tell which
 * one wrote a payload, so for the same realm, URL list, origin and budget both must produce the
 * same payloads, byte for byte, in the same order. The invalidator calls the database with
 * `origin` null for the reference server's format ('boxel') and its own origin otherwise.
 */

interface PayloadCase {
  realm: string;
  urls: string[];
  format: WireFormat;
  origin: string;
  budget: number;
}

const REALM = 'https://host.example/realm/';
const ORIGIN = 'proc-1';
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

let db: TestDatabase;
let client: Client;

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  client = new Client({ connectionString: db.url });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await db?.drop();
});

async function sqlPayloads(c: PayloadCase): Promise<string[]> {
  const origin = c.format === 'boxel' ? null : c.origin;
  const { rows } = await client.query<{ p: string[] }>('SELECT module_cache_module_payloads($1, $2::text[], $3, $4::int) AS p', [
    c.realm,
    c.urls,
    origin,
    c.budget,
  ]);
  return rows[0].p;
}

const tsPayloads = (c: PayloadCase): string[] =>
  encodeInvalidations({ kind: 'module', realm: c.realm, urls: c.urls }, { origin: c.origin, format: c.format, maxBytes: c.budget });

/** The room a module payload leaves for its URL list under the default budget (head and tail of the shape excluded). */
function room(format: WireFormat, realm = REALM, origin = ORIGIN, budget = MAX_PAYLOAD_BYTES): number {
  const [empty] = encodeInvalidations(
    { kind: 'module', realm, urls: [`${realm}x`] },
    { origin, format: format === 'boxel' ? 'boxel' : undefined, maxBytes: budget },
  );
  return budget - (bytes(empty) - bytes(JSON.stringify(`${realm}x`)));
}
/** A URL in REALM whose JSON string takes exactly `cost` bytes, padded with `pad` (1 or 3 bytes a character). */
function urlCosting(cost: number, pad = 'x'): string {
  const free = cost - 2 - bytes(REALM);
  const n = Math.floor(free / bytes(pad));
  return `${REALM}${pad.repeat(n)}${'y'.repeat(free - n * bytes(pad))}`;
}

const cases: Array<[string, Omit<PayloadCase, 'realm' | 'origin' | 'budget'> & Partial<PayloadCase>]> = [];
for (const format of ['module-cache', 'boxel'] as const) {
  const fits = room(format);
  cases.push(
    [`${format}: no URLs`, { format, urls: [] }],
    [`${format}: one URL`, { format, urls: [`${REALM}a.gts`] }],
    [`${format}: escapes (quote, backslash, U+2028)`, { format, urls: [`${REALM}a"b\\c.gts`, `${REALM}line\u2028sep.gts`] }],
    [`${format}: multi-byte and astral`, { format, urls: [`${REALM}日本語/ünï.gts`, `${REALM}😀/👍🏽/🏳️‍🌈.gts`, `${REALM}\u{10348}.ts`] }],
    [`${format}: a URL that exactly fills a payload`, { format, urls: [urlCosting(fits), `${REALM}b.gts`] }],
    [`${format}: a URL one byte too long degrades to a realm message`, { format, urls: [`${REALM}a.gts`, urlCosting(fits + 1)] }],
    [`${format}: a multi-byte URL over the budget degrades`, { format, urls: [urlCosting(fits + 2, '長'), `${REALM}b.gts`] }],
    [
      `${format}: 2,000 URLs packed into many payloads`,
      { format, urls: Array.from({ length: 2000 }, (_, i) => `${REALM}${i % 5 === 0 ? `ünïcødé-${i}-日本` : `consumer-${i}`}.gts`) },
    ],
    [
      `${format}: a realm too long for a realm message degrades to global`,
      { format, realm: `https://h.example/${'r'.repeat(300)}/`, budget: 300, urls: [`https://h.example/${'r'.repeat(300)}/a.gts`] },
    ],
  );
}

describe('module_cache_module_payloads and encodeInvalidations write the same bytes', () => {
  it.each(cases)('%s', async (_, c) => {
    const input: PayloadCase = { realm: REALM, origin: ORIGIN, budget: MAX_PAYLOAD_BYTES, ...c };
    expect(await sqlPayloads(input)).toEqual(tsPayloads(input));
  });

  it('for random URL lists (0 to ~2,000 URLs, multi-byte, near and over the budget), both formats (property)', async () => {
    const segment = fc.string({
      unit: fc.constantFrom(
        'a',
        'Z',
        '-',
        '_',
        '.',
        '%20',
        '"',
        '\\',
        "'",
        'é',
        'ß',
        '日',
        '本',
        '한',
        '😀',
        '👍🏽',
        '🏳️‍🌈',
        '\u2028',
        '\u{10348}',
      ),
      minLength: 1,
      maxLength: 24,
    });
    const realm = fc.oneof(
      {
        weight: 8,
        arbitrary: fc
          .array(segment, { maxLength: 3 })
          // In the one realm rule's canonical form (a payload realm must already be in it): `.` and `..` resolved.
          .map((segments) => parseRealmURL(`https://host.example/${segments.map((s) => `${encodeURIComponent(s)}/`).join('')}`)),
      },
      // Realms too long for a realm message under small budgets: the degraded message becomes global.
      { weight: 1, arbitrary: fc.integer({ min: 300, max: 7000 }).map((n) => `https://host.example/${'r'.repeat(n)}/`) },
    );
    const format = fc.constantFrom<WireFormat>('module-cache', 'boxel');
    const origin = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }).filter((s) => !/\p{Cc}/u.test(s));
    const budget = fc.oneof(fc.constant(MAX_PAYLOAD_BYTES), fc.integer({ min: 400, max: 7999 }));
    const input = fc.tuple(realm, format, origin, budget).chain(([r, f, o, b]) => {
      const fits = room(f, r, o, b);
      // Long URLs whose JSON cost lands within a few bytes of the room, on both sides of it.
      const near = fc
        .tuple(fc.integer({ min: -6, max: 6 }), fc.constantFrom('x', '長', 'é'))
        .map(([delta, pad]) => `${r}${pad.repeat(Math.max(1, Math.floor((fits + delta - 2 - bytes(r)) / bytes(pad))))}`);
      const url = fc.oneof(
        { weight: 20, arbitrary: fc.array(segment, { minLength: 1, maxLength: 4 }).map((segs) => `${r}${segs.join('/')}.gts`) },
        { weight: 1, arbitrary: near },
      );
      const urls = fc.oneof(
        { weight: 4, arbitrary: fc.uniqueArray(url, { maxLength: 60 }) },
        { weight: 1, arbitrary: fc.uniqueArray(url, { minLength: 500, maxLength: 2000 }) },
      );
      return urls.map((u): PayloadCase => ({ realm: r, urls: u, format: f, origin: o, budget: b }));
    });
    await fc.assert(
      fc.asyncProperty(input, async (c) => {
        expect(await sqlPayloads(c)).toEqual(tsPayloads(c));
      }),
      { numRuns: 150 },
    );
  });

  // `encodeInvalidations` sends each URL once (`new Set`). The database function encodes what it is
  // given; the invalidation transaction (module_cache_invalidate_many) gives it each URL once per
  // realm, first occurrences first: the variants, then one URL per deleted row, of which a module
  // cached in 3 scopes has 3. So both paths send the same bytes.
  it('for a module cached in several scopes, the transaction names each URL once, as the TS encoder does', async () => {
    for (const format of ['module-cache', 'boxel'] as const) {
      await client.query(
        `INSERT INTO module_cache_entries (url, scope, alias, realm, definitions, deps)
         SELECT $1, s, $2, $3, '{}'::json, '{}' FROM unnest(ARRAY['public', 'user:1', 'user:2']) s`,
        [`${REALM}a.gts`, `${REALM}a`, REALM],
      );
      const listener = new Client({ connectionString: db.url });
      await listener.connect();
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(n.payload!));
      await listener.query('LISTEN parity_channel');
      try {
        const variants = [`${REALM}a`, `${REALM}a.gts`];
        const origin = format === 'boxel' ? null : ORIGIN;
        const [{ payloads }] = (
          await client.query<{ payloads: number }>(
            `SELECT payloads FROM module_cache_invalidate_many($1::text[], $2::int[], $3::text[], $4::text[], $5, $6, 60000, 'parity_channel', 0, NULL, NULL)`,
            [[`${REALM}a`], [0], variants, variants.map(() => REALM), origin, MAX_PAYLOAD_BYTES],
          )
        ).rows;
        await waitFor(() => heard.length >= payloads, 5000, 'the payloads');
        const c: PayloadCase = { realm: REALM, origin: ORIGIN, budget: MAX_PAYLOAD_BYTES, format, urls: [...variants, `${REALM}a.gts`] };
        expect(heard).toEqual(tsPayloads(c));
      } finally {
        await listener.end();
      }
    }
  });
});
