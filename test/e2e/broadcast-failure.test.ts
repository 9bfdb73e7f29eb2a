import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidationBroadcastError, ModuleCacheOptionsError } from '../../src';
import { createCacheApp, migrate, type CacheApp } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { FakeSource } from '../support/fake-source';

const REALM = 'https://example.test/realm/';
let db: TestDatabase;
let cache: CacheApp;
const source = new FakeSource().define(`${REALM}a.ts`).define(`${REALM}b.ts`, ['./a.ts']);

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  // A NOTIFY that fails, for real, inside the server: this database resolves pg_notify to a
  // function that raises (as a full notify queue would), because public comes before pg_catalog.
  await db.query(`CREATE FUNCTION public.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $$
                  BEGIN RAISE EXCEPTION 'too many notifications in the NOTIFY queue (simulated)'; END $$`);
  await db.query(`ALTER DATABASE ${db.name} SET search_path = public, pg_catalog`);
  cache = await createCacheApp(db.url, { realms: [REALM], source, listener: false });
});
afterAll(async () => {
  await cache?.close();
  await db?.drop();
});

describe('a NOTIFY that fails', () => {
  it('rolls the delete back, fails the invalidation with a clear error, and keeps the local invalidation', async () => {
    await cache.lookup.lookup(`${REALM}b.ts`);
    expect(await db.query(`SELECT url FROM module_cache_entries ORDER BY url`)).toHaveLength(2);
    const logBefore = await db.query(`SELECT * FROM module_cache_fence_log`);

    const error = await cache.lookup.invalidate(`${REALM}a.ts`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidationBroadcastError);
    expect((error as Error).message).toMatch(
      /invalidate\(https:\/\/example\.test\/realm\/a\.ts\) failed .*peers were not notified.*NOTIFY queue/,
    );

    // Nothing of the transaction survived: rows and fence log are as before.
    expect(await db.query(`SELECT url FROM module_cache_entries ORDER BY url`)).toHaveLength(2);
    expect(await db.query(`SELECT * FROM module_cache_fence_log`)).toEqual(logBefore);
    // Locally the module and its consumer were dropped (conservative): the next lookup reads the table again.
    const tableHits = cache.lookup.stats().hits.table;
    await cache.lookup.lookup(`${REALM}a.ts`);
    await cache.lookup.lookup(`${REALM}b.ts`);
    expect(cache.lookup.stats().hits.table).toBe(tableHits + 2);

    await expect(cache.lookup.clearRealm(REALM)).rejects.toBeInstanceOf(InvalidationBroadcastError);
    await expect(cache.lookup.clearAll()).rejects.toBeInstanceOf(InvalidationBroadcastError);
    expect(await db.query(`SELECT url FROM module_cache_entries`)).toHaveLength(2);
  });
});

describe('startup', () => {
  it('fails with a message naming the bad option', async () => {
    const error = await createCacheApp(db.url, { realms: ['https://example.test/no-slash'], source }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModuleCacheOptionsError);
    expect((error as Error).message).toMatch(/realms\.0: must be an absolute, canonical http\(s\) URL ending with "\/"/);
  });

  it('fails with a clear message when the migrations were not run', async () => {
    const empty = await createTestDatabase();
    try {
      await expect(createCacheApp(empty.url, { realms: [REALM], source, listener: false })).rejects.toThrow(/moduleCacheMigrations/);
    } finally {
      await empty.drop();
    }
  });
});
