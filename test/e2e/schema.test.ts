import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { moduleCacheEntities, moduleCacheMigrations } from '../../src';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { schemaSnapshot } from '../support/schema-snapshot';

/**
 * src/persistence/schema.sql is the schema the migrations build, committed so that a change to it
 * shows up in review as a diff. A migration added or changed without `npm run db:dump` fails here.
 */
const COMMITTED = readFileSync(path.join(__dirname, '..', '..', 'src', 'persistence', 'schema.sql'), 'utf8');
const STALE = 'the migrations build another schema than src/persistence/schema.sql: run `npm run db:dump` and commit the file';
/** What the snapshot prints for a database without any of our objects: its two header lines alone. */
const SNAPSHOT_OF_NOTHING = `${COMMITTED.split('\n').slice(0, 2).join('\n')}\n`;

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});

const snapshot = () => schemaSnapshot((sql) => db.query(sql));

describe('schema snapshot', () => {
  it('a freshly migrated database has the committed schema', async () => {
    await migrate(db.url);
    expect(await snapshot(), STALE).toBe(COMMITTED);
  });

  it('every down() and then every up() again gives the same schema', async () => {
    const dataSource = new DataSource({ type: 'postgres', url: db.url, entities: moduleCacheEntities, migrations: moduleCacheMigrations });
    await dataSource.initialize();
    try {
      // Idempotent: the previous test may have migrated this database already.
      await dataSource.runMigrations();
      const built = await snapshot();
      for (let i = 0; i < moduleCacheMigrations.length; i++) await dataSource.undoLastMigration();
      expect(await snapshot(), 'every down() run: none of our objects may be left').toBe(SNAPSHOT_OF_NOTHING);
      await dataSource.runMigrations();
      expect(await snapshot(), 'down() and up() again do not give back the schema the migrations build').toBe(built);
    } finally {
      await dataSource.destroy();
    }
  });
});
