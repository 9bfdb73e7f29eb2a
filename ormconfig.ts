import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { moduleCacheEntities, moduleCacheMigrations } from './src';

/**
 * The DataSource the typeorm CLI uses (`npm run migration:run`, `npm run migration:show`):
 * the library's tables and migrations on DATABASE_URL.
 */
export default new DataSource({
  type: 'postgres',
  url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  entities: moduleCacheEntities,
  migrations: moduleCacheMigrations,
});
