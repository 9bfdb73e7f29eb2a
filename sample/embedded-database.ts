import { fork } from 'node:child_process';
import path from 'node:path';
import { Client } from 'pg';
import { startEmbeddedPostgres } from './embedded-postgres';

export interface EmbeddedServer {
  /** Connection URL of the database created for the service. */
  url: string;
  dataDir: string;
  /** Stops the server (if it still runs) and removes its data dir. Idempotent. */
  stop(): Promise<void>;
}

export interface EmbeddedDatabase extends EmbeddedServer {
  /** For a forced exit: lets go of the keeper at once; it stops the server and cleans up on its own. */
  kill(): void;
}

const DATABASE = 'module_cache';
// `.ts` under ts-node, `.js` in dist.
const KEEPER = path.join(__dirname, `embedded-database-keeper${path.extname(__filename)}`);
const KEEPER_START_TIMEOUT_MS = 60_000;

export type KeeperMessage = { type: 'started'; url: string; dataDir: string } | { type: 'failed'; error: string };

/**
 * The embedded server, run by a small keeper process in its own session. A terminal's Ctrl-C
 * signals its whole foreground process group: a server started by the primary itself would begin
 * its own fast shutdown at once, under the workers still closing. The keeper is out of reach of
 * that signal and stops the server only when the primary says so, or when the primary is gone.
 */
export async function startDetachedEmbeddedDatabase(): Promise<EmbeddedDatabase> {
  const keeper = fork(KEEPER, [], { detached: true, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => keeper.once('exit', () => resolve()));
  const started = await new Promise<Extract<KeeperMessage, { type: 'started' }>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the embedded PostgreSQL did not start within ${KEEPER_START_TIMEOUT_MS} ms`)),
      KEEPER_START_TIMEOUT_MS,
    );
    keeper.once('exit', (code) => reject(new Error(`the embedded PostgreSQL keeper exited (${code}) before the server started`)));
    keeper.on('message', (message: KeeperMessage) => {
      clearTimeout(timer);
      if (message.type === 'started') resolve(message);
      else reject(new Error(`embedded PostgreSQL: ${message.error}`));
    });
  }).catch((error: unknown) => {
    keeper.kill('SIGTERM');
    throw error;
  });
  return {
    url: started.url,
    dataDir: started.dataDir,
    async stop() {
      if (keeper.connected) keeper.send({ type: 'stop' });
      else keeper.kill('SIGTERM');
      await exited;
    },
    kill() {
      // A closed channel is the keeper's cue to stop the server and remove its data on its own.
      if (keeper.connected) keeper.disconnect();
    },
  };
}

/** The embedded server for the service, in this process (the keeper), with the service's database in it. */
export async function startEmbeddedDatabase(log: (line: string) => void): Promise<EmbeddedServer> {
  // The data is thrown away on exit: durability would only slow the demo down.
  const server = await startEmbeddedPostgres({ dataDirPrefix: 'module-cache-service-pg-', postgresFlags: ['-c', 'fsync=off'], log });
  try {
    await queryOnce(server.url, `CREATE DATABASE ${DATABASE}`);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return { url: server.url.replace(/\/postgres$/, `/${DATABASE}`), dataDir: server.dataDir, stop: () => server.stop() };
}

async function queryOnce(url: string, sql: string): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
