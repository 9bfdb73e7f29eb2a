/**
 * Shared plumbing of the benchmarks: a fresh database (DATABASE_URL's server, else an embedded
 * PostgreSQL), cleanup that runs even on failure or Ctrl-C, statistics, the raw NOTIFY
 * baseline, and the result table each benchmark prints (and appends to $BENCH_RESULTS for
 * `npm run bench`'s summary).
 */
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { appendFileSync, rmSync } from 'node:fs';
import { Client } from 'pg';
import { migrate } from '../test/support/app';
import { queryOnce } from '../test/support/pg';
import { startEmbeddedPostgres } from '../test/support/embedded-postgres';
import { spawnWorker, type WorkerHandle } from '../test/processes/harness';
import type { ModuleCacheOptions } from '../src';
import { markdownTable, type BenchResult } from './report';

export type { BenchResult, BenchRow } from './report';

// Nest's per-event log lines (listener state changes...) would drown the progress lines.
if (!process.env.BENCH_LOGS) Logger.overrideLogger(false);

export const REALM = 'https://bench.example/realm/';

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes on one machine. */
export const wallClock = (): number => performance.timeOrigin + performance.now();

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const benchStarted = performance.now();

/** One progress line, stamped with the seconds since this benchmark started. */
export function progress(message: string): void {
  process.stdout.write(`  ${((performance.now() - benchStarted) / 1000).toFixed(1).padStart(5)}s · ${message}\n`);
}

// ---- cleanup ------------------------------------------------------------------------

const cleanups: Array<{ what: string; run: () => Promise<unknown> | unknown }> = [];

/** Registers something to undo; undone in reverse order when the benchmark ends, fails or is interrupted. */
export function onCleanup(what: string, run: () => Promise<unknown> | unknown): void {
  cleanups.push({ what, run });
}

async function cleanUp(): Promise<void> {
  while (cleanups.length) {
    const { what, run } = cleanups.pop()!;
    try {
      await run();
    } catch (error) {
      process.stderr.write(`  ! cleanup of ${what} failed: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  }
}

// ---- database -----------------------------------------------------------------------

export interface BenchDatabase {
  url: string;
  serverVersion: string;
  query<T extends Record<string, unknown> = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}

export { queryOnce };

let serverVersion = '';

/** A fresh, migrated database on DATABASE_URL's server, else on an embedded PostgreSQL started for this run. */
export async function benchDatabase(): Promise<BenchDatabase> {
  let admin = process.env.DATABASE_URL;
  if (!admin) {
    progress('starting an embedded PostgreSQL (DATABASE_URL is not set)');
    const embedded = await startEmbeddedPostgres();
    onCleanup('the embedded PostgreSQL', () => embedded.stop());
    // On Ctrl-C embedded-postgres's own exit hook stops the server and exits, maybe before our
    // cleanup gets to delete the data directory: do that last thing on the way out regardless.
    process.once('exit', () => rmSync(embedded.dataDir, { recursive: true, force: true }));
    admin = embedded.url;
  }
  const name = `mc_bench_${randomBytes(5).toString('hex')}`;
  await queryOnce(admin, `CREATE DATABASE ${name}`);
  // An embedded server is deleted whole (and on Ctrl-C embedded-postgres is already stopping it).
  if (process.env.DATABASE_URL) onCleanup(`database ${name}`, () => queryOnce(admin!, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  const u = new URL(admin);
  u.pathname = `/${name}`;
  const url = u.toString();
  await migrate(url);
  const [row] = await queryOnce<{ server_version: string }>(url, 'SHOW server_version');
  serverVersion = row.server_version;
  return { url, serverVersion, query: (sql, params) => queryOnce(url, sql, params) };
}

/**
 * Worker processes (test/processes/harness.ts), stopped at cleanup; at most `parallel` starting at
 * a time (each must be up within the harness's 60 s, which 9 ts-node processes starting at once
 * on a loaded 2-core machine can miss).
 */
export async function benchWorkers(
  count: number,
  url: string,
  options: (i: number) => Omit<ModuleCacheOptions, 'source'>,
  parallel = count,
): Promise<WorkerHandle[]> {
  const workers: WorkerHandle[] = [];
  for (let first = 0; first < count; first += parallel) {
    // Each is registered as soon as it is up; one still starting when we die exits on its own (IPC disconnect).
    const started = await Promise.all(
      Array.from({ length: Math.min(parallel, count - first) }, async (_, k) => {
        const worker = await spawnWorker(`w${first + k}`, url, options(first + k));
        onCleanup(`worker process ${worker.name}`, () => worker.stop());
        return worker;
      }),
    );
    workers.push(...started);
  }
  return workers;
}

/** A pg client connected to `url`, ended at cleanup. */
export async function benchClient(url: string, applicationName = 'module-cache-bench'): Promise<Client> {
  const client = new Client({ connectionString: url, application_name: applicationName });
  client.on('error', () => undefined);
  await client.connect();
  onCleanup(`pg client ${applicationName}`, () => client.end());
  return client;
}

// ---- statistics and formatting -------------------------------------------------------

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Nearest-rank percentiles of the samples. */
export function summarize(samples: number[]): Summary {
  if (samples.length === 0) throw new Error('no samples');
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
  return {
    n: sorted.length,
    p50: at(50),
    p99: at(99),
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    min: sorted[0],
    max: sorted[sorted.length - 1],
  };
}

export const median = (values: number[]): number => summarize(values).p50;

/** A duration given in milliseconds, in the unit that reads best. */
export function ms(value: number): string {
  if (value < 1) return `${(value * 1000).toFixed(0)} µs`;
  if (value < 1000) return `${value.toFixed(value < 10 ? 2 : 1)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}

export function rate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(0)} k/s`;
  return `${perSecond.toFixed(0)}/s`;
}

export function megabytes(bytes: number): string {
  return `${bytes >= 0 ? '+' : '−'}${(Math.abs(bytes) / 2 ** 20).toFixed(1)} MB`;
}

export const times = (x: number): string => `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`;

/** A goal with its verdict: goals are targets, reported, never asserted. */
export const goal = (text: string, met: boolean): string => `${text} (${met ? 'met' : 'missed'})`;

// ---- the raw NOTIFY baseline ----------------------------------------------------------

/**
 * One-way NOTIFY latency: a pg client's `SELECT pg_notify` sent → another client's
 * 'notification' event, one at a time (each waits for the previous one to arrive). With
 * `inTransaction`, the NOTIFY travels as the invalidation's does: BEGIN, a statement, the
 * NOTIFY, COMMIT (four round trips; delivered at commit). `gapMs` pauses before each sample:
 * on this (virtual) machine a round trip after an idle pause costs about 3× a back-to-back
 * one, so a baseline for measurements taken after pauses must pause the same way.
 */
export async function rawNotifyLatency(
  url: string,
  {
    samples,
    warmup = 50,
    inTransaction = false,
    durable = false,
    gapMs = 0,
  }: {
    samples: number;
    warmup?: number;
    inTransaction?: boolean;
    /** One statement that also writes a row (so its commit writes and flushes WAL), as any durable invalidation must. */
    durable?: boolean;
    gapMs?: number;
  },
): Promise<number[]> {
  const channel = 'module_cache_bench_raw';
  const listener = await benchClient(url, 'module-cache-bench-raw-listen');
  const notifier = await benchClient(url, 'module-cache-bench-raw-notify');
  await listener.query(`LISTEN ${channel}`);
  if (durable) await notifier.query('CREATE TABLE IF NOT EXISTS module_cache_bench_log (id bigserial PRIMARY KEY, payload text NOT NULL)');
  let arrived: ((at: number) => void) | undefined;
  let expected = '';
  listener.on('notification', (n) => {
    const at = wallClock();
    if (n.channel === channel && n.payload === expected) arrived?.(at);
  });
  const result: number[] = [];
  for (let i = 0; i < warmup + samples; i++) {
    if (gapMs) await sleep(gapMs);
    expected = `raw-${i}`;
    const arrival = new Promise<number>((resolve) => (arrived = resolve));
    const sent = wallClock();
    const query = inTransaction
      ? (async () => {
          await notifier.query('BEGIN');
          await notifier.query('SELECT 1');
          await notifier.query('SELECT pg_notify($1, $2)', [channel, expected]);
          await notifier.query('COMMIT');
        })()
      : durable
        ? notifier.query(
            'WITH logged AS (INSERT INTO module_cache_bench_log (payload) VALUES ($2) RETURNING payload) SELECT pg_notify($1, payload) FROM logged',
            [channel, expected],
          )
        : notifier.query('SELECT pg_notify($1, $2)', [channel, expected]);
    const at = await arrival;
    await query;
    if (i >= warmup) result.push(at - sent);
  }
  await listener.query(`UNLISTEN ${channel}`);
  return result;
}

/**
 * Offset of a worker's wallClock() from ours (IPC ping with the smallest round trip), so
 * cross-process timings can be checked: |offset| well under the measured latency means the
 * two clocks agree.
 */
export async function clockOffset(worker: WorkerHandle, pings = 30): Promise<{ offset: number; uncertainty: number }> {
  let best = { offset: 0, uncertainty: Infinity };
  for (let i = 0; i < pings; i++) {
    const before = wallClock();
    const theirs = await worker.call<number>('now');
    const after = wallClock();
    if ((after - before) / 2 < best.uncertainty) best = { offset: theirs - (before + after) / 2, uncertainty: (after - before) / 2 };
  }
  return best;
}

// ---- running one benchmark ----------------------------------------------------------------

/**
 * Runs one benchmark: prints its table, appends its result to $BENCH_RESULTS, and cleans up
 * everything it started (also on failure and on SIGINT/SIGTERM).
 */
export function runBench(benchmark: string, body: () => Promise<Omit<BenchResult, 'benchmark'>>): void {
  const started = performance.now();
  let interrupted = false;
  const interrupt = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n  ! ${signal}: cleaning up\n`);
    cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  // A stray rejection (e.g. a worker call cut short by an interrupt) fails the run, after cleanup.
  process.on('unhandledRejection', (reason) => {
    process.exitCode = 1;
    if (!interrupted) process.stderr.write(`  ! unhandled rejection: ${reason instanceof Error ? reason.message : String(reason)}\n`);
  });
  process.stdout.write(`\n## ${benchmark}\n`);
  (async () => {
    let code = 0;
    try {
      const result = await body();
      const seconds = (performance.now() - started) / 1000;
      const full: BenchResult = { benchmark, serverVersion, seconds, ...result };
      process.stdout.write(
        `\n${markdownTable(
          ['measure', 'ours', 'baseline (same run)', 'ratio', 'goal'],
          result.rows.map((r) => [r.measure, r.ours, r.baseline, r.ratio, r.goal]),
        )}\n`,
      );
      for (const note of result.notes ?? []) process.stdout.write(`  note: ${note}\n`);
      process.stdout.write(`  (${seconds.toFixed(1)} s, PostgreSQL ${serverVersion || 'n/a'})\n`);
      if (process.env.BENCH_RESULTS) appendFileSync(process.env.BENCH_RESULTS, `${JSON.stringify(full)}\n`);
    } catch (error) {
      code = 1;
      process.stderr.write(`  ! ${benchmark} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    } finally {
      await cleanUp();
    }
    if (!interrupted) process.exit(code || Number(process.exitCode ?? 0));
  })();
}
