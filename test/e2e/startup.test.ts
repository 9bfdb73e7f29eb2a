import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModuleCacheOptionsError } from '../../src';
import { createCacheApp, migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { FakeSource } from '../support/fake-source';

const REALM = 'https://example.test/realm/';
let db: TestDatabase;
const source = new FakeSource().define(`${REALM}a.ts`).define(`${REALM}b.ts`, ['./a.ts']);

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
});
afterAll(async () => {
  await db?.drop();
});

describe('startup', () => {
  it('fails with a message naming the bad option', async () => {
    const error = await createCacheApp(db.url, { realms: ['https://example.test/no-slash'], source }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModuleCacheOptionsError);
    expect((error as Error).message).toMatch(/realms\.0: must be an absolute http\(s\) URL ending with "\/"/);
  });

  it('takes a realm spelled loosely, normalised as registerRealm() normalises it; both refuse a query', async () => {
    const app = await createCacheApp(db.url, { realms: ['HTTPS://Example.TEST:443/realm/'], source, listener: false });
    try {
      const { lookup } = app;
      expect((await lookup.lookup(`${REALM}b.ts`))?.url).toBe(`${REALM}b.ts`);
      // Another spelling of the same realm: unregistered as the one the option registered.
      lookup.unregisterRealm('https://EXAMPLE.test/realm/');
      await expect(lookup.lookup(`${REALM}b.ts`)).rejects.toMatchObject({ code: 'E_UNKNOWN_REALM' });
      lookup.registerRealm('HTTPS://example.test/realm/');
      expect((await lookup.lookup(`${REALM}a.ts`))?.url).toBe(`${REALM}a.ts`);
      expect(await lookup.clearRealm('https://Example.Test/realm/')).toBe(2);
      expect(() => lookup.registerRealm(`${REALM}?v=1`)).toThrow(expect.objectContaining({ code: 'E_INVALID_REALM_URL' }));
      await expect(lookup.clearRealm(`${REALM}#x`)).rejects.toMatchObject({ code: 'E_INVALID_REALM_URL' });
    } finally {
      await app.close();
    }
    const refused = await createCacheApp(db.url, { realms: [`${REALM}?v=1`], source }).catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(/realms\.0: must be an absolute http\(s\) URL ending with "\/" and without query or hash/);
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
