import { DataSource } from 'typeorm';
import { moduleCacheEntities, moduleCacheMigrations } from '../src';

/**
 * Runs the cache's migrations once, from the primary, before any worker starts: workers that
 * each ran them would race on the same DDL. Returns the names of the migrations applied.
 */
export async function runMigrationsOnce(databaseURL: string): Promise<string[]> {
  const dataSource = new DataSource({
    type: 'postgres',
    url: databaseURL,
    entities: moduleCacheEntities,
    migrations: moduleCacheMigrations,
    applicationName: 'module-cache-service-migrate',
  });
  await dataSource.initialize();
  try {
    const applied = await dataSource.runMigrations({ transaction: 'each' });
    return applied.map((m) => m.name);
  } finally {
    await dataSource.destroy();
  }
}
