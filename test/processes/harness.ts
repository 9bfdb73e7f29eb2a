import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { ModuleCacheOptions } from '../../src';

export interface WorkerHandle {
  name: string;
  pid: number;
  child: ChildProcess;
  call<T = unknown>(cmd: string, ...args: unknown[]): Promise<T>;
  /** Asks the worker to close its app (graceful) and waits for it to exit. */
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

const WORKER = join(__dirname, 'worker.ts');

/** Spawns one worker process (ts-node, transpile-only: decorator metadata is emitted) and waits until its app is up. */
export async function spawnWorker(
  name: string,
  databaseUrl: string,
  options: Omit<ModuleCacheOptions, 'source'>,
  sourceOptions: WorkerSourceOptions = {},
): Promise<WorkerHandle> {
  const child = fork(WORKER, [], {
    execArgv: ['-r', 'ts-node/register/transpile-only'],
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      WORKER_OPTIONS: JSON.stringify(options),
      WORKER_SOURCE: JSON.stringify(sourceOptions),
      WORKER_NAME: name,
      TS_NODE_PROJECT: join(__dirname, '../../tsconfig.json'),
      TS_NODE_TRANSPILE_ONLY: '1',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let nextId = 1;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  const pid = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker ${name} did not start within 60 s`)), 60_000);
    child.once('exit', (code) => reject(new Error(`worker ${name} exited with ${code} before it was ready`)));
    child.on(
      'message',
      (message: {
        ready?: boolean;
        pid?: number;
        id?: number;
        ok?: boolean;
        result?: unknown;
        error?: { message: string; name: string; code?: string };
      }) => {
        if (message.ready) {
          clearTimeout(timer);
          resolve(message.pid!);
          return;
        }
        const waiter = pending.get(message.id!);
        if (!waiter) return;
        pending.delete(message.id!);
        if (message.ok) waiter.resolve(message.result);
        else
          waiter.reject(
            Object.assign(new Error(`[${name}] ${message.error!.message}`), {
              name: message.error!.name,
              ...(message.error!.code ? { code: message.error!.code } : {}),
            }),
          );
      },
    );
  });
  exited.then((code) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`worker ${name} exited (${code})`));
    pending.clear();
  });
  return {
    name,
    pid,
    child,
    exited,
    call<T>(cmd: string, ...args: unknown[]): Promise<T> {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error(`worker ${name} has exited`));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ id, cmd, args });
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.send({ id: 0, cmd: 'exit', args: [] });
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export async function spawnWorkers(
  count: number,
  databaseUrl: string,
  options: (i: number) => Omit<ModuleCacheOptions, 'source'>,
  sourceOptions: WorkerSourceOptions = {},
): Promise<WorkerHandle[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => spawnWorker(`w${i}`, databaseUrl, options(i), sourceOptions)));
}

/**
 * The truth table the workers' source reads: a module's version, its imports, and whether its
 * own computation fails (`broken`).
 */
export const TRUTH_SQL = `CREATE TABLE IF NOT EXISTS truth (
  url text PRIMARY KEY, version int NOT NULL DEFAULT 1, deps text[] NOT NULL DEFAULT '{}', broken boolean NOT NULL DEFAULT false)`;

/** Options of a worker process besides the cache's own (WORKER_SOURCE). */
export interface WorkerSourceOptions {
  /** The source reads its dependencies' versions transitively (as a bundler would) while declaring only direct imports. */
  transitiveReads?: boolean;
  /** The worker's TypeORM pool: its size (default 4) and, when set, `application_name` = prefix + worker name. */
  pool?: { max?: number; applicationNamePrefix?: string };
}

export interface ClusterHandle {
  workers: WorkerHandle[];
  primary: ChildProcess;
  /** Stops every worker, then the relay, and waits for the primary to exit. */
  stop(): Promise<void>;
}

/**
 * A node:cluster primary (cluster-primary.ts) with its relay and `count` workers in relay mode:
 * each worker is driven like a spawnWorker() one, through the primary.
 */
export async function spawnCluster(
  count: number,
  databaseUrl: string,
  options: Omit<ModuleCacheOptions, 'source'>,
  relayApplicationName: string,
): Promise<ClusterHandle> {
  const primary = fork(join(__dirname, 'cluster-primary.ts'), [], {
    execArgv: ['-r', 'ts-node/register/transpile-only'],
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      WORKER_OPTIONS: JSON.stringify(options),
      CLUSTER_WORKERS: String(count),
      RELAY_APPLICATION_NAME: relayApplicationName,
      TS_NODE_PROJECT: join(__dirname, '../../tsconfig.json'),
      TS_NODE_TRANSPILE_ONLY: '1',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => primary.once('exit', (code) => resolve(code)));
  let nextId = 1;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  const pids = await new Promise<number[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the cluster did not start within 90 s')), 90_000);
    primary.once('exit', (code) => reject(new Error(`the cluster primary exited with ${code} before it was ready`)));
    primary.on(
      'message',
      (message: {
        ready?: boolean;
        pids?: number[];
        id?: number;
        ok?: boolean;
        result?: unknown;
        error?: { message: string; name: string; code?: string };
      }) => {
        if (message.ready) {
          clearTimeout(timer);
          resolve(message.pids!);
          return;
        }
        const waiter = pending.get(message.id!);
        if (!waiter) return;
        pending.delete(message.id!);
        if (message.ok) waiter.resolve(message.result);
        else waiter.reject(Object.assign(new Error(message.error!.message), { name: message.error!.name }));
      },
    );
  });
  exited.then((code) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`the cluster primary exited (${code})`));
    pending.clear();
  });
  const workers = pids.map((pid, index): WorkerHandle => ({
    name: `c${index}`,
    pid,
    child: primary,
    exited,
    call<T>(cmd: string, ...args: unknown[]): Promise<T> {
      if (primary.exitCode !== null) return Promise.reject(new Error('the cluster primary has exited'));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        primary.send({ worker: index, id, cmd, args });
      });
    },
    stop: () => Promise.reject(new Error('stop the whole cluster with ClusterHandle.stop()')),
  }));
  return {
    workers,
    primary,
    async stop() {
      if (primary.exitCode === null) primary.kill('SIGTERM');
      const timer = setTimeout(() => primary.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
