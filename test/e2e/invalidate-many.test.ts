import { Client } from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InvalidModuleURLError } from '../../src';
import { createCacheApp, migrate, type CacheApp } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { FakeSource } from '../support/fake-source';
import { waitFor } from '../support/wait';
import { seedGraph as seedModuleGraph } from '../support/graph';

const REALM = 'https://example.test/many/';
const OTHER = 'https://example.test/other/';
let db: TestDatabase;
let cache: CacheApp;

const url = (n: string, realm = REALM) => `${realm}${n}.gts`;

const seedGraph = (edges: Record<string, string[]>, realm = REALM) => seedModuleGraph(db, realm, edges);

const remaining = async () =>
  (await db.query<{ url: string }>(`SELECT url FROM module_cache_entries ORDER BY url`)).map((r) =>
    r.url.replace(/^https:\/\/example\.test\//, ''),
  );
const logRows = async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM module_cache_fence_log`))[0].n;

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  // fenceWaitMs 0: the group-commit test holds the fence as long as it likes.
  cache = await createCacheApp(db.url, { realms: [REALM, OTHER], source: new FakeSource(), listener: false, fenceWaitMs: 0 });
});
afterEach(async () => {
  await db.query('DELETE FROM module_cache_entries');
  await db.query('DELETE FROM module_cache_edges');
});
afterAll(async () => {
  await cache.close();
  await db.drop();
});

describe('invalidateMany()', () => {
  it('invalidates every URL and its consumers in one transaction, across realms, and returns the union', async () => {
    await seedGraph({ a: [], b: ['a'], c: [], d: ['c'], e: [] });
    await seedGraph({ x: [] }, OTHER);
    const before = await logRows();
    const urls = await cache.lookup.invalidateMany([url('a'), url('c'), url('x', OTHER)]);
    expect(urls).toEqual(expect.arrayContaining([url('a'), url('b'), url('c'), url('d'), url('x', OTHER)]));
    expect(urls).not.toContain(url('e'));
    expect(new Set(urls).size).toBe(urls.length);
    expect(await remaining()).toEqual(['many/e.gts']);
    expect(await logRows()).toBe(before + 1);
  });

  it('skips URLs outside every realm, as invalidate() does; an empty list or only outsiders do nothing', async () => {
    await seedGraph({ a: [] });
    const before = await logRows();
    expect(await cache.lookup.invalidateMany([])).toEqual([]);
    expect(await cache.lookup.invalidateMany(['https://elsewhere.test/m.gts'])).toEqual([]);
    expect(await logRows()).toBe(before);
    const urls = await cache.lookup.invalidateMany(['https://elsewhere.test/m.gts', url('a')]);
    expect(urls).toContain(url('a'));
    expect(await remaining()).toEqual([]);
  });

  it('rejects the whole call before anything happens when one URL is invalid', async () => {
    await seedGraph({ a: [] });
    const before = await logRows();
    await expect(cache.lookup.invalidateMany([url('a'), 'not a url'])).rejects.toBeInstanceOf(InvalidModuleURLError);
    await expect(cache.lookup.invalidateMany([url('a'), 42 as unknown as string])).rejects.toBeInstanceOf(InvalidModuleURLError);
    await expect(cache.lookup.invalidateMany(url('a') as unknown as string[])).rejects.toBeInstanceOf(InvalidModuleURLError);
    expect(await remaining()).toEqual(['many/a.gts']);
    expect(await logRows()).toBe(before);
  });

  it('names each URL once in the payloads, however many scopes cached it', async () => {
    await db.query(
      `INSERT INTO module_cache_entries (url, scope, alias, realm, definitions, deps)
       SELECT $1, s, $2, $3, '{}'::json, '{}' FROM unnest(ARRAY['public', 'user:1', 'user:2']) s`,
      [url('a'), `${REALM}a`, REALM],
    );
    const peer = new Client({ connectionString: db.url });
    await peer.connect();
    const heard: string[] = [];
    peer.on('notification', (n) => heard.push(n.payload!));
    await peer.query('LISTEN module_cache_invalidated');
    try {
      await cache.lookup.invalidateMany([url('a')]);
      await waitFor(() => heard.length > 0, 5000, 'the payload');
      const named = heard.flatMap((p) => (JSON.parse(p) as { m?: string[] }).m ?? []);
      expect(named.filter((u) => u === url('a'))).toHaveLength(1);
    } finally {
      await peer.end();
    }
  });
});

describe('group commit', () => {
  it('concurrent calls that arrive while transactions are in flight share the next one; each gets its own URLs', async () => {
    const names = Array.from({ length: 24 }, (_, i) => i);
    await seedGraph(
      Object.fromEntries(
        names.flatMap((i) => [
          [`x${i}`, []],
          [`y${i}`, [`x${i}`]],
        ]),
      ),
    );
    const gate = new Client({ connectionString: db.url });
    await gate.connect();
    const before = await logRows();
    try {
      // Every transaction parks at the fence until the gate lets go.
      await gate.query('BEGIN');
      await gate.query('SELECT pg_advisory_xact_lock(28003, 0)');
      const calls = names.map((i) => cache.lookup.invalidate(url(`x${i}`)));
      await waitFor(
        async () => (await db.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`)).length >= 4,
        10_000,
        'four transactions waiting at the fence',
      );
      await gate.query('COMMIT');
      const results = await Promise.all(calls);
      results.forEach((urls, i) => {
        expect(urls).toEqual(expect.arrayContaining([url(`x${i}`), url(`y${i}`)]));
        expect(urls.filter((u) => /\/[xy]\d+\.gts$/.test(u)).sort()).toEqual([url(`x${i}`), url(`y${i}`)].sort());
      });
    } finally {
      await gate.end();
    }
    // 4 in flight when the gate held, the other 20 together in the next one.
    expect(await logRows()).toBe(before + 5);
    expect(await remaining()).toEqual([]);
    expect(cache.lookup.stats().invalidations).toBeGreaterThanOrEqual(24);
  });

  it("rejects every caller of a transaction with that transaction's error, and the next transaction still runs", async () => {
    await seedGraph({ a: [], b: [] });
    const gate = new Client({ connectionString: db.url });
    await gate.connect();
    try {
      await gate.query('BEGIN');
      await gate.query('SELECT pg_advisory_xact_lock(28003, 0)');
      const first = Array.from({ length: 4 }, () => cache.lookup.invalidate(url('a')));
      const settling = Promise.allSettled(first);
      await waitFor(
        async () => (await db.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`)).length >= 4,
        10_000,
        'four transactions waiting at the fence',
      );
      // Their backends are killed while they wait: those four fail, coded.
      await db.query(
        `SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND NOT l.granted AND l.pid <> pg_backend_pid()`,
      );
      const settled = await settling;
      expect(settled.every((s) => s.status === 'rejected')).toBe(true);
      for (const s of settled) expect((s as PromiseRejectedResult).reason).toMatchObject({ code: 'E_INVALIDATION_BROADCAST' });
    } finally {
      await gate.query('COMMIT').catch(() => undefined);
      await gate.end();
    }
    expect(await cache.lookup.invalidate(url('b'))).toContain(url('b'));
  });
});
