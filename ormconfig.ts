import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { moduleCacheEntities, moduleCacheMigrations } from './src';

/**
 * The DataSource the typeorm CLI uses (`npm run migration:run`, `npm run migration:show`): the
 * library's tables and migrations on DATABASE_URL. There is no default: `npm start` and `npm test`
 * use an embedded PostgreSQL that lives only while they run, so any default here would migrate a
 * database they never use. It says on stderr which database it migrates.
 */
const url = process.env.DATABASE_URL;
if (!url) {
  throw new Error(
    'ormconfig.ts: DATABASE_URL is unset. Set it to the database to migrate (npm start and npm test use an embedded PostgreSQL of their own that lives only while they run, and migrate it themselves)',
  );
}
process.stderr.write(`ormconfig.ts: module-cache migrations on ${url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')}\n`);

export default new DataSource({
  type: 'postgres',
  url,
  entities: moduleCacheEntities,
  migrations: moduleCacheMigrations,
});
