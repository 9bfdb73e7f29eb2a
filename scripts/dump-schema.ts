/**
 * `npm run db:dump`: migrates a fresh database and writes the schema it ends up with to
 * src/persistence/schema.sql (see test/support/schema-snapshot.ts for what is printed and why not
 * pg_dump). Uses DATABASE_URL's server when set (a throwaway database on it), else an embedded
 * PostgreSQL, as the tests do. Run it after adding a migration, and commit the file.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { migrate } from '../test/support/app';
import { startEmbeddedPostgres } from '../test/support/embedded-postgres';
import { schemaSnapshot } from '../test/support/schema-snapshot';

const TARGET = path.join(__dirname, '..', 'src', 'persistence', 'schema.sql');

async function onClient<T>(url: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres();
  const admin = process.env.DATABASE_URL ?? embedded!.url;
  const name = `mc_schema_${randomBytes(6).toString('hex')}`;
  const url = new URL(admin);
  url.pathname = `/${name}`;
  try {
    await onClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
    try {
      await migrate(url.toString());
      const schema = await onClient(url.toString(), (c) => schemaSnapshot(async (sql) => (await c.query(sql)).rows));
      writeFileSync(TARGET, schema);
      const [{ server_version: version }] = await onClient(admin, async (c) => (await c.query('SHOW server_version')).rows);
      process.stdout.write(`wrote ${path.relative(process.cwd(), TARGET)} (PostgreSQL ${version})\n`);
    } finally {
      await onClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    }
  } finally {
    await embedded?.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`db:dump failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
