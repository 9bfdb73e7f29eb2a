import cluster, { type Worker } from 'node:cluster';
import { createServer } from 'node:net';
import { Logger } from '@nestjs/common';
import { ModuleCacheClusterRelay } from '../src/cluster';
import { FATAL, isMessage, READY, type WorkerMessage } from './cluster-messages';
import { serveClusterMetrics } from './cluster-metrics';
import { startDetachedEmbeddedDatabase, type EmbeddedDatabase } from './embedded-database';
import { exampleCommands } from './examples';
import { runMigrationsOnce } from './migrate';
import { listRealms } from './realm-layout';
import { portProblem, type ServiceConfig } from './service-config';

/** A worker that keeps crashing is a bug or a broken environment, not bad luck: stop restarting it. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 1_000;
/** How long workers get to close (requests, listener, pool) before they are killed. */
const WORKER_CLOSE_TIMEOUT_MS = 20_000;
const SIGNAL_REPEAT_MS = 1_000;

/**
 * The primary: owns the database (embedded when DATABASE_URL is unset), runs the migrations once,
 * forks the workers (which share the port through node:cluster), restarts crashed ones, and on
 * SIGINT/SIGTERM stops the workers first and the database last.
 */
export async function runPrimary(config: ServiceConfig): Promise<void> {
  // Before anything starts: a taken port is one line and exit 1, not a database and a crash loop.
  const portError = await tryListen(config.port, config.host);
  if (portError) {
    process.stderr.write(`module-cache service: ${portProblem(config, portError)}\n`);
    process.exit(1);
  }
  const logger = new Logger('Primary');
  const workers = new Map<number, Worker>(); // by slot: a restarted worker keeps its slot (and WATCHER role)
  const ready = new Set<number>();
  let announced = false;
  const restarts: number[] = [];
  let database: EmbeddedDatabase | undefined;
  let relay: ModuleCacheClusterRelay | undefined;
  let databaseURL = config.databaseURL;
  let stopping: Promise<void> | undefined;
  let starting: Promise<void> = Promise.resolve();

  const stop = (why: string, exitCode: number) =>
    (stopping ??= (async () => {
      logger.log(`stopping (${why}): workers first, then the database`);
      await starting.catch(() => undefined); // a Ctrl-C during start-up still cleans up what it made
      const exits = [...workers.values()].map((worker) => exited(worker));
      // SIGTERM rather than a message: a worker still loading has no handler yet, and then the
      // default action (exit) is the right one.
      for (const worker of workers.values()) worker.process.kill('SIGTERM');
      const timer = setTimeout(() => {
        logger.warn(`workers did not close within ${WORKER_CLOSE_TIMEOUT_MS} ms: killing them`);
        workers.forEach((w) => w.process.kill('SIGKILL'));
      }, WORKER_CLOSE_TIMEOUT_MS);
      await Promise.all(exits);
      clearTimeout(timer);
      await relay?.stop();
      if (database) {
        await database.stop();
        logger.log(`embedded PostgreSQL stopped, ${database.dataDir} removed`);
      }
      process.exit(exitCode);
    })());

  let firstSignalAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt === undefined) {
      firstSignalAt = Date.now();
      return void stop(signal, 0);
    }
    // One request can arrive twice at once (timeout(1) signals the process and then its group).
    if (Date.now() - firstSignalAt < SIGNAL_REPEAT_MS) return;
    // A second Ctrl-C: the user does not want to wait.
    logger.warn(`${signal} again: forcing exit`);
    workers.forEach((w) => w.process.kill('SIGKILL'));
    database?.kill();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const fork = (slot: number) => {
    // Only slot 0 watches the realm folder: its invalidations reach the others over NOTIFY.
    const worker = cluster.fork({ DATABASE_URL: databaseURL, WORKER_SLOT: String(slot), WATCHER: slot === 0 ? '1' : '0' });
    workers.set(slot, worker);
    worker.on('message', (message: unknown) => {
      if (isMessage<Extract<WorkerMessage, { type: typeof FATAL }>>(message, FATAL)) {
        logger.error(message.message);
        return void stop(message.message, 1);
      }
      if (!isMessage<Extract<WorkerMessage, { type: typeof READY }>>(message, READY)) return;
      ready.add(slot);
      if (ready.size === config.workers && !stopping && !announced) {
        announced = true;
        printBanner();
      }
    });
    worker.on('exit', (code, signal) => {
      if (workers.get(slot) === worker) workers.delete(slot);
      if (stopping) return;
      const now = Date.now();
      restarts.push(now);
      while (restarts[0] < now - RESTART_WINDOW_MS) restarts.shift();
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      if (restarts.length > MAX_RESTARTS) {
        logger.error(`worker ${slot} ${how}; ${MAX_RESTARTS} restarts within ${RESTART_WINDOW_MS / 1000} s already: giving up`);
        void stop('workers keep crashing', 1);
        return;
      }
      logger.error(`worker ${slot} ${how}; restarting it in ${RESTART_DELAY_MS} ms`);
      setTimeout(() => stopping || fork(slot), RESTART_DELAY_MS);
    });
  };

  const printBanner = () => {
    const lines = [
      `module-cache service: ${config.workers} worker(s) on http://localhost:${config.port}/ (listening on ${config.host}${config.host === '127.0.0.1' ? '; set HOST to widen' : ''})`,
      `realms: each subfolder of ${config.realmsDir} at ${config.realmsURL}<subfolder>/, now ${describeRealms(config)}`,
      '  (add, remove or edit one: every worker sees it; a .private file in one makes its cache per x-user)',
      `database: ${database ? `embedded PostgreSQL (data in ${database.dataDir}, removed on exit)` : redact(databaseURL!)}`,
      `cache: ${config.consistency} consistency; ${relay ? 'one dedicated connection for the host, relayed to the workers' : 'one dedicated connection per worker'} (CONSISTENCY, RELAY)`,
      'try:',
      ...exampleCommands(config).map((c) => `  ${c}`),
      'Ctrl-C stops the workers and the database.',
    ];
    process.stdout.write(`\n${lines.join('\n')}\n\n`);
  };

  starting = (async () => {
    if (!databaseURL) {
      logger.log('DATABASE_URL is unset: starting an embedded PostgreSQL');
      database = await startDetachedEmbeddedDatabase();
      databaseURL = database.url;
    }
    const applied = await runMigrationsOnce(databaseURL);
    logger.log(applied.length ? `migrations applied: ${applied.join(', ')}` : 'schema is up to date');
    if (stopping) return;
    if (config.relay) {
      // Before forking: the workers say hello to it as they start.
      relay = new ModuleCacheClusterRelay({ connection: { connectionString: databaseURL }, applicationName: 'module-cache-relay' });
      await relay.start();
    }
    cluster.on('message', serveClusterMetrics());
    for (let slot = 0; slot < config.workers; slot++) fork(slot);
  })();
  try {
    await starting;
  } catch (error) {
    logger.error(`start-up failed: ${error instanceof Error ? error.message : String(error)}`);
    await stop('start-up failed', 1);
  }
}

/** Whether the port can be listened on (then let go at once): the error code when it cannot. */
function tryListen(port: number, host: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

function exited(worker: Worker): Promise<void> {
  if (worker.process.exitCode !== null || worker.process.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => worker.once('exit', () => resolve()));
}

function describeRealms(config: ServiceConfig): string {
  const realms = listRealms(config).map((r) => (r.private ? `${r.name} (private)` : r.name));
  return realms.length ? realms.join(', ') : 'none';
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
