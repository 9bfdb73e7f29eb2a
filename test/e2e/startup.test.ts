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
