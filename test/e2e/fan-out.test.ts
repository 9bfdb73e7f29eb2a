import { Client } from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseInvalidation } from '../../src';
import { createCacheApp, migrate, type CacheApp } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { countStatements } from '../support/pg';
import { FakeSource } from '../support/fake-source';
import { waitFor } from '../support/wait';
import { seedGraph as seedModuleGraph } from '../support/graph';

const REALM = 'https://example.test/realm/';
let db: TestDatabase;
let cache: CacheApp;

const seedGraph = (edges: Record<string, string[]>, scopes?: string[]) => seedModuleGraph(db, REALM, edges, scopes);

async function remaining(): Promise<string[]> {
  const rows = await db.query<{ url: string }>(`SELECT DISTINCT url FROM module_cache_entries ORDER BY url`);
  return rows.map((r) => r.url.slice(REALM.length));
}

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  cache = await createCacheApp(db.url, { realms: [REALM], source: new FakeSource(), listener: false });
});
afterEach(async () => {
  await db.query('DELETE FROM module_cache_entries');
  await db.query('DELETE FROM module_cache_edges');
});
afterAll(async () => {
  await cache.close();
  await db.drop();
});

const url = (n: string) => `${REALM}${n}.gts`;

describe('transitive invalidation', () => {
  it('linear chain: invalidating the root clears every consumer, all scopes', async () => {
    await seedGraph({ a: [], b: ['a'], c: ['b'], d: ['c'], unrelated: [] }, ['public', 'user:1']);
    const urls = await cache.lookup.invalidate(url('a'));
    expect(urls).toEqual(expect.arrayContaining(['a', 'b', 'c', 'd'].map(url)));
    expect(urls).not.toContain(url('unrelated'));
    expect(await remaining()).toEqual(['unrelated.gts']);
  });

  it('a middle node clears only its consumers', async () => {
    await seedGraph({ a: [], b: ['a'], c: ['b'], d: ['c'] });
    await cache.lookup.invalidate(url('c'));
    expect(await remaining()).toEqual(['a.gts', 'b.gts']);
  });

  it('branching: a diamond and a fan of consumers', async () => {
    await seedGraph({ base: [], left: ['base'], right: ['base'], top: ['left', 'right'], side: [], leaf: ['side'] });
    const urls = await cache.lookup.invalidate(`${REALM}base.ts`); // another spelling of the same module
    expect(urls).toEqual(expect.arrayContaining([`${REALM}base`, `${REALM}base.ts`, url('base'), url('left'), url('right'), url('top')]));
    expect(await remaining()).toEqual(['leaf.gts', 'side.gts']);
  });

  it('cycles terminate', async () => {
    await seedGraph({ a: ['c'], b: ['a'], c: ['b'], d: ['c'], e: [] });
    await cache.lookup.invalidate(url('b'));
    expect(await remaining()).toEqual(['e.gts']);
  });

  it('a 10,000-module graph is found, cleared and broadcast in one statement', async () => {
    // A tree: module i imports module floor(i / 4); the root is m0. Plus 500 unrelated modules.
    const edges: Record<string, string[]> = {};
    for (let i = 0; i < 10_000; i++) edges[`m${i}`] = i === 0 ? [] : [`m${Math.floor(i / 4)}`];
    for (let i = 0; i < 500; i++) edges[`u${i}`] = [];
    await seedGraph(edges);
    const started = performance.now();
    const { result: urls, statements: trips } = await countStatements(() => cache.lookup.invalidate(url('m0')));
    const ms = performance.now() - started;
    process.stdout.write(`[fan-out] 10,000-module graph: ${urls.length} URLs invalidated in ${ms.toFixed(1)} ms, ${trips} round trips\n`);
    expect(urls.filter((u) => u.endsWith('.gts') && u.startsWith(`${REALM}m`))).toHaveLength(10_000);
    expect(trips).toBe(1); // fan-out, fence log, delete and the NOTIFY batch (encoded by the database) in one statement
    expect((await remaining()).length).toBe(500);
  });
});

describe('the payloads the database encodes (unsigned: one statement whatever the fan-out)', () => {
  it('parse, stay within the byte budget, name every URL, and degrade a URL too long for any payload to a realm message', async () => {
    const peer = new Client({ connectionString: db.url });
    await peer.connect();
    const heard: string[] = [];
    peer.on('notification', (n) => heard.push(n.payload ?? ''));
    await peer.query('LISTEN module_cache_invalidated');
    try {
      // A hub with 1,000 consumers, some with multi-byte names, and one whose URL fits no payload.
      const edges: Record<string, string[]> = { hub: [] };
      for (let i = 0; i < 1000; i++) edges[i % 7 === 0 ? `ünïcødé-${i}-日本` : `consumer-${i}`] = ['hub'];
      edges[`long-${'x'.repeat(7100)}`] = ['hub'];
      await seedGraph(edges);
      const expected = (await db.query<{ url: string }>(`SELECT url FROM module_cache_entries`)).map((r) => r.url);
      const { result: urls, statements } = await countStatements(() => cache.lookup.invalidate(url('hub')));
      expect(statements).toBe(1);
      expect(urls).toEqual(expect.arrayContaining(expected));
      await waitFor(() => heard.some((p) => p.includes('"k":"realm"')), 5000, 'the degraded realm message');
      const parsed = heard.map((p) => ({ bytes: Buffer.byteLength(p), result: parseInvalidation(p) }));
      expect(parsed.every((p) => p.result.ok && p.bytes <= 7000)).toBe(true);
      const named = new Set(parsed.flatMap((p) => (p.result.ok && p.result.message.kind === 'module' ? p.result.message.urls : [])));
      expect(expected.filter((u) => !named.has(u))).toEqual([expected.find((u) => u.includes('long-'))]);
      expect(parsed.filter((p) => p.result.ok && p.result.message.kind === 'realm')).toHaveLength(1);
    } finally {
      await peer.end();
    }
  });
});

describe('a consumer persisted between the fan-out walk and the partition locks', () => {
  const SECRET = 'fan-out-test-signing-secret';
  let signed: CacheApp;
  beforeAll(async () => {
    signed = await createCacheApp(db.url, { realms: [REALM], source: new FakeSource(), listener: false, signingSecret: SECRET });
  });
  afterAll(async () => {
    await signed?.close();
  });

  /**
   * Holds the seed's partition lock (as a persist of a new consumer of it would), lets the
   * invalidation walk the graph and park on the lock, adds a consumer, releases: the
   * invalidation must re-read the fan-out under its locks and clear the newcomer too.
   */
  async function interleave(app: CacheApp): Promise<string[]> {
    await seedGraph({ a: [], b: ['a'] });
    const gate = new Client({ connectionString: db.url });
    await gate.connect();
    try {
      await gate.query('BEGIN');
      await gate.query(`SELECT pg_advisory_xact_lock_shared(28004, module_cache_partition(md5($1)::uuid))`, [`${REALM}a`]);
      const invalidated = app.lookup.invalidate(url('a'));
      await waitFor(
        async () => (await db.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 28004 AND NOT granted`)).length > 0,
        10_000,
        'the invalidation waiting for the partition',
      );
      await seedGraph({ late1: ['b'] });
      await gate.query('COMMIT');
      return await invalidated;
    } finally {
      await gate.end();
    }
  }

  it.each([
    ['unsigned payloads', () => cache],
    ['signed payloads', () => signed],
  ])('is caught (%s): the newcomer is cleared and named in the broadcast', async (format, app) => {
    const secret = format === 'signed payloads' ? SECRET : undefined;
    const peer = new Client({ connectionString: db.url });
    await peer.connect();
    const heard: string[] = [];
    peer.on('notification', (n) => {
      const parsed = parseInvalidation(n.payload, { signingSecret: secret });
      if (parsed.ok && parsed.message.kind === 'module') heard.push(...parsed.message.urls);
    });
    await peer.query('LISTEN module_cache_invalidated');
    try {
      const urls = await interleave(app());
      expect(urls).toEqual(expect.arrayContaining([url('a'), url('b'), url('late1')]));
      expect(await remaining()).toEqual([]);
      await waitFor(() => heard.includes(url('late1')), 5000, 'the late consumer in the broadcast');
    } finally {
      await peer.end();
    }
  });
});

describe('generation counters stay bounded', () => {
  it('a million invalidations of distinct modules with nothing in flight leave no counter behind', () => {
    const lookup = cache.lookup as unknown as { forgetModules(aliases: string[]): void };
    for (let i = 0; i < 1_000_000; i += 1000) {
      lookup.forgetModules(Array.from({ length: 1000 }, (_, j) => `${REALM}gone-${i + j}`));
    }
    expect(cache.lookup.stats().trackedGenerations).toBe(0);
    expect(cache.lookup.stats().inFlight).toBe(0);
  });
});
