import { Client, Pool } from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { TRUTH_SQL, type WorkerHandle } from '../../processes/harness';
import { waitFor, within } from '../wait';

/**
 * What the fault tests (restart-storm, connection-cuts) share: a 15-module import graph with a
 * cycle and shared dependencies in the truth table, SQL clients that survive a server going away,
 * random lookup/invalidation loops whose failures are tallied by kind, liveness of the worker
 * processes, and the consistency checks run once everything is quiet again.
 */

/**
 * m(i) imports GRAPH[i]: a cycle m5 → m7 → m6 → m5; m0, m2 and m14 shared by several consumers;
 * every module but m14 reaches m0 (invalidating m0 fans out to all of them); m14 imports nothing,
 * so only invalidating m14 itself touches its computations.
 */
export const GRAPH: readonly (readonly number[])[] = [
  [],
  [0],
  [0, 1],
  [2],
  [3, 0],
  [4, 7],
  [5],
  [6],
  [2, 5],
  [8],
  [9, 1, 14],
  [10, 3],
  [11],
  [12, 0, 14],
  [],
];

export const moduleUrl = (realm: string, i: number): string => `${realm}m${i}.ts`;
export const moduleUrls = (realm: string): string[] => GRAPH.map((_, i) => moduleUrl(realm, i));

/** SQL from the test process, through a client that outlives a server restart or a cut connection. */
export interface Sql {
  readonly url: string;
  /** The database's name (for pg_stat_activity filters and the test/support helpers that want it). */
  readonly name: string;
  query<T extends Record<string, unknown> = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  end(): Promise<void>;
}

/**
 * A small pool: idle clients that die with the server are dropped (the pool's 'error' listener),
 * and pool.query() handles the error of the client it lends. A query fails while the server is down.
 */
export function sqlPool(url: string, applicationName = 'mc-fault-test'): Sql {
  const pool = new Pool({ connectionString: url, max: 4, application_name: applicationName, connectionTimeoutMillis: 5_000 });
  pool.on('error', () => undefined);
  let ended: Promise<void> | undefined;
  return {
    url,
    name: decodeURIComponent(new URL(url).pathname.slice(1)),
    query: async <T extends Record<string, unknown>>(sql: string, params?: unknown[]) => (await pool.query<T>(sql, params)).rows,
    end: () => (ended ??= pool.end().catch(() => undefined)),
  };
}

/** One session of its own (advisory locks, open transactions), with an 'error' listener for its whole life. */
export interface Session {
  /** The connection's error, once it died (e.g. with the server). */
  readonly lost: Error | undefined;
  query<T extends Record<string, unknown> = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Ends the session (releasing what it holds); harmless when it is already gone. */
  close(): Promise<void>;
}

export async function openSession(url: string, applicationName: string): Promise<Session> {
  const client = new Client({ connectionString: url, application_name: applicationName });
  let lost: Error | undefined;
  client.on('error', (error) => (lost ??= error));
  await client.connect();
  return {
    get lost() {
      return lost;
    },
    query: async <T extends Record<string, unknown>>(sql: string, params?: unknown[]) => (await client.query<T>(sql, params)).rows,
    close: () => within(client.end(), 5_000, 'a session to end').catch(() => undefined),
  };
}

export async function seedGraph(sql: Sql, realm: string): Promise<void> {
  await sql.query(TRUTH_SQL);
  const modules = GRAPH.map((deps, i) => ({ url: moduleUrl(realm, i), deps: deps.map((d) => moduleUrl(realm, d)) }));
  await sql.query(
    `INSERT INTO truth (url, deps)
     SELECT m.url, ARRAY(SELECT json_array_elements_text(m.deps)) FROM json_to_recordset($1::json) AS m(url text, deps json)`,
    [JSON.stringify(modules)],
  );
}

/** Rows whose definitions disagree with the truth table: the module's own version or a direct dependency's. */
export async function staleRows(sql: Sql): Promise<string[]> {
  const rows = await sql.query<{ url: string; scope: string }>(
    `SELECT e.url, e.scope FROM module_cache_entries e JOIN truth t ON t.url = e.url
      WHERE (e.definitions->'value'->>'version')::int <> t.version
         OR EXISTS (SELECT 1 FROM truth d WHERE d.url = ANY(t.deps)
                     AND (e.definitions->'value'->'depVersions'->>d.url)::int IS DISTINCT FROM d.version)`,
  );
  return rows.map((r) => `${r.url} (${r.scope})`);
}

/** Rows stored with an error: none of the graph's modules is broken, so each would be an outage stored as a module error. */
export async function errorRows(sql: Sql): Promise<string[]> {
  const rows = await sql.query<{ url: string; error: unknown }>(`SELECT url, error FROM module_cache_entries WHERE error IS NOT NULL`);
  return rows.map((r) => `${r.url}: ${JSON.stringify(r.error)}`);
}

export async function truthVersions(sql: Sql): Promise<Map<string, number>> {
  const rows = await sql.query<{ url: string; version: number }>(`SELECT url, version FROM truth`);
  return new Map(rows.map((r) => [r.url, r.version]));
}

interface Entry {
  definitions: { value: { version: number } };
}

/** Lookups of every module in every process whose version is not the truth's (`worker url: served vN, truth vM`). */
export async function staleServes(workers: WorkerHandle[], sql: Sql, urls: string[]): Promise<string[]> {
  const truth = await truthVersions(sql);
  const stale: string[] = [];
  for (const worker of workers) {
    const entries = await worker.call<Entry[]>('lookupAll', urls);
    entries.forEach((entry, i) => {
      const served = entry?.definitions?.value?.version;
      if (served !== truth.get(urls[i])) stale.push(`${worker.name} ${urls[i]}: served v${served}, truth v${truth.get(urls[i])}`);
    });
  }
  return stale;
}

/** Failures counted by kind: the error's name and its message with URLs, numbers and the worker's tag taken out. */
export class ErrorTally {
  private readonly counts = new Map<string, number>();

  add(error: unknown, prefix = ''): void {
    const kind = prefix + errorKind(error);
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }

  get total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }

  byKind(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort((a, b) => b[1] - a[1]));
  }
}

export function errorKind(error: unknown): string {
  const e = error instanceof Error ? error : new Error(String(error));
  const message = e.message
    .replace(/^\[[^\]]+\] /, '')
    .replace(/https?:\/\/\S+/g, '<url>')
    .replace(/\d+/g, 'N');
  return `${e.name}: ${message.length > 100 ? `${message.slice(0, 100)}…` : message}`;
}

export interface LoopOptions {
  workers: WorkerHandle[];
  /** What the loops look up and invalidate. */
  urls: string[];
  /** Truth updates (a module changes, then the change is announced through some process). */
  sql: Sql;
  tally: ErrorTally;
  /** Loops per process. */
  concurrency: number;
  /** Share of operations that change a module and invalidate it (the rest are lookups). */
  invalidateShare: number;
  /** Bounds: each loop stops after this many operations, at `deadline` (performance.now()), or when stop() is called. */
  maxOps: number;
  deadline: number;
  /** Pause between a loop's operations. */
  pauseMs: number;
}

export interface Loops {
  stop(): void;
  /** Resolves when every loop has stopped (they never reject: failures go to the tally). */
  done: Promise<{ lookups: number; invalidations: number }>;
}

/** Random lookups and invalidations in every process, until stopped or a bound is reached. */
export function startLoops(options: LoopOptions): Loops {
  let stopped = false;
  let lookups = 0;
  let invalidations = 0;
  const running = () => !stopped && performance.now() < options.deadline;
  const pick = () => options.urls[Math.floor(Math.random() * options.urls.length)];
  const loop = async (worker: WorkerHandle) => {
    for (let op = 0; op < options.maxOps && running(); op++) {
      if (worker.child.exitCode !== null || worker.child.signalCode !== null) return;
      const target = pick();
      if (Math.random() < options.invalidateShare) {
        invalidations++;
        try {
          await options.sql.query(`UPDATE truth SET version = version + 1 WHERE url = $1`, [target]);
        } catch (error) {
          options.tally.add(error, 'truth update: ');
          await sleep(options.pauseMs * 5);
          continue;
        }
        await worker.call('invalidate', target).catch((error: unknown) => options.tally.add(error, 'invalidate: '));
      } else {
        lookups++;
        await worker.call('lookup', target).catch((error: unknown) => options.tally.add(error, 'lookup: '));
      }
      await sleep(options.pauseMs);
    }
  };
  const done = Promise.all(options.workers.flatMap((w) => Array.from({ length: options.concurrency }, () => loop(w)))).then(() => ({
    lookups,
    invalidations,
  }));
  return { stop: () => void (stopped = true), done };
}

/** Exits of the worker processes, as they happen; `died` rejects at the first one (race it with what a test waits for). */
export interface Liveness {
  readonly exits: string[];
  died: Promise<never>;
  /** `promise`, unless a worker exits first: then the exit, as the failure. */
  alive<T>(promise: Promise<T>): Promise<T>;
  /** Every process still running: no exit code, no signal, `exited` not resolved. */
  allAlive(): boolean;
}

export function watchLiveness(workers: WorkerHandle[]): Liveness {
  const exits: string[] = [];
  let die!: (error: Error) => void;
  const died = new Promise<never>((_, reject) => (die = reject));
  died.catch(() => undefined);
  for (const worker of workers) {
    void worker.exited.then((code) => {
      exits.push(`worker ${worker.name} (pid ${worker.pid}) exited with code ${code}, signal ${worker.child.signalCode}`);
      die(new Error(exits.join('; ')));
    });
  }
  return {
    exits,
    died,
    alive: <T>(promise: Promise<T>) => Promise.race([promise, died]),
    allAlive: () => exits.length === 0 && workers.every((w) => w.child.exitCode === null && w.child.signalCode === null),
  };
}

/**
 * Recovery after a fault: every listener listening again, then every module looked up in every
 * process. Fails naming what did not come back within 30 s, or as soon as a worker dies.
 * Returns how long it took.
 */
export async function awaitRecovery(workers: WorkerHandle[], urls: string[], liveness: Liveness): Promise<number> {
  const from = performance.now();
  await liveness.alive(
    waitFor(async () => (await listenerStates(workers)).every((s) => s === 'listening'), 30_000, 'every listener to listen again'),
  );
  await liveness.alive(
    waitFor(
      async () => {
        await Promise.all(workers.map((w) => w.call('lookupAll', urls)));
        return true;
      },
      30_000,
      'lookups of every module to succeed in every process',
      100,
    ),
  );
  return performance.now() - from;
}

export async function listenerStates(workers: WorkerHandle[]): Promise<string[]> {
  return Promise.all(workers.map(async (w) => (await w.call<{ state: string }>('listenerState')).state));
}
