import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { moduleCacheEntities, moduleCacheMigrations } from '../../src';
import { createTestDatabase, type TestDatabase } from '../support/database';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});

const ours = async () =>
  (
    await db.query<{ name: string }>(
      `SELECT relname AS name FROM pg_class WHERE relname LIKE 'module\\_cache\\_%' AND relkind IN ('r', 'S')
       UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'module\\_cache\\_%' ORDER BY 1`,
    )
  ).map((r) => r.name);

describe('migration', () => {
  it('creates logged tables, the fence state, log and functions; each down() undoes its migration', async () => {
    const dataSource = new DataSource({ type: 'postgres', url: db.url, entities: moduleCacheEntities, migrations: moduleCacheMigrations });
    await dataSource.initialize();
    try {
      await dataSource.runMigrations();
      expect(await ours()).toEqual(
        expect.arrayContaining([
          'module_cache_entries',
          'module_cache_edges',
          'module_cache_fence',
          'module_cache_fence_log',
          'module_cache_fence_seq',
          'module_cache_persist',
          'module_cache_invalidate_and_notify',
        ]),
      );
      const persistence = await db.query<{ relpersistence: string }>(
        `SELECT DISTINCT relpersistence FROM pg_class WHERE relname IN ('module_cache_entries', 'module_cache_edges', 'module_cache_fence', 'module_cache_fence_log', 'module_cache_peers')`,
      );
      expect(persistence).toEqual([{ relpersistence: 'p' }]); // logged, on purpose (see the migration)
      expect(await ours()).toEqual(expect.arrayContaining(['module_cache_peers', 'module_cache_invalidate_encoded']));
      const tokenColumn = async () =>
        (await db.query(`SELECT 1 FROM information_schema.columns WHERE table_name = 'module_cache_fence_log' AND column_name = 'token'`))
          .length;
      expect(await tokenColumn()).toBe(1);
      const definitionsType = async () =>
        (
          await db.query<{ t: string }>(
            `SELECT data_type AS t FROM information_schema.columns WHERE table_name = 'module_cache_entries' AND column_name = 'definitions'`,
          )
        )[0].t;
      expect(await definitionsType()).toBe('json');
      const realmHashColumn = async () =>
        (
          await db.query(
            `SELECT 1 FROM information_schema.columns WHERE table_name = 'module_cache_entries' AND column_name = 'realm_hash'`,
          )
        ).length;
      expect(await realmHashColumn()).toBe(0);
      expect(await ours()).toEqual(expect.arrayContaining(['module_cache_persist_fenced', 'module_cache_enter_fence']));
      // Each down() restores the layout before it: the second migration's down() gives back the first's.
      await dataSource.undoLastMigration();
      expect(await ours()).not.toContain('module_cache_persist_fenced');
      expect(await ours()).toContain('module_cache_persist');
      await dataSource.undoLastMigration();
      expect(await realmHashColumn()).toBe(1);
      await dataSource.undoLastMigration();
      expect(await definitionsType()).toBe('jsonb');
      expect(await ours()).toContain('module_cache_persist');
      await dataSource.undoLastMigration();
      expect(await tokenColumn()).toBe(0);
      await dataSource.undoLastMigration();
      expect(await ours()).not.toContain('module_cache_invalidate_encoded');
      await dataSource.undoLastMigration();
      expect(await ours()).not.toContain('module_cache_peers');
      await dataSource.undoLastMigration();
      expect(await ours()).toEqual(
        expect.arrayContaining(['module_cache_dependencies', 'module_cache_invalidations', 'module_cache_fenced_upsert']),
      );
      await dataSource.undoLastMigration();
      expect(await ours()).toEqual([]);
    } finally {
      await dataSource.destroy();
    }
  });
});
