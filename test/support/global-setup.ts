import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './embedded-postgres';

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}

let embedded: EmbeddedDatabase | undefined;

/** One Postgres for the whole run: DATABASE_URL when set, else an embedded PG 18 in the OS temp dir. */
export async function setup(project: TestProject): Promise<void> {
  let url = process.env.DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres();
    url = embedded.url;
    process.stdout.write(`[test bed] embedded PostgreSQL at ${url}\n`);
  } else {
    process.stdout.write(`[test bed] using DATABASE_URL ${url.replace(/:[^:@/]*@/, ':***@')}\n`);
  }
  project.provide('adminDatabaseUrl', url);
}

export async function teardown(): Promise<void> {
  await embedded?.stop();
}
