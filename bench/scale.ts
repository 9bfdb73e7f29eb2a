/**
 * Scale: 1, 2, 4, 8 and 16 processes on one database, each count in two modes — without the
 * relay (every process a worker with its own dedicated LISTEN connection) and with it (a
 * node:cluster primary holding a ModuleCacheClusterRelay, its workers in `listener: { relay: true }`).
 * For each: propagation latency (one process's invalidate() called → every other process applied
 * it), table-hit lookups per second summed over the processes, and the Postgres backends they hold.
 * Baselines, same run: raw NOTIFY fan-out to as many LISTENing pg clients, and the same
 * primary-key SELECT from as many plain `pg` processes with the same pool and concurrency.
 *
 * Writes bench/results.json, draws bench/scale.svg and regenerates the table in docs/benchmarks.md
 * (bench/scale-report.ts, which `npm run bench:scale-report` runs alone).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { spawnCluster, spawnWorker, TRUTH_SQL, type ClusterHandle, type WorkerHandle } from '../test/processes/harness';
import type { ModuleCacheStats } from '../src';
import {
  benchClient,
  benchDatabase,
  clockOffset,
  onCleanup,
  progress,
  REALM,
  runBench,
  sleep,
  summarize,
  wallClock,
  type BenchRow,
} from './support';
import {
  MODE_LABEL,
  ms,
  perSecond,
  publish,
  ratio,
  RESULTS_FILE,
  CHART_FILE,
  writeResults,
  type ScaleMode,
  type ScaleResults,
  type ScaleRow,
} from './scale-report';

const COUNTS = [1, 2, 4, 8, 16];
/** Invalidations measured per point, after the warm-up ones (which also size the pause between them). */
const SAMPLES = 200;
const WARMUP = 30;
/** The workers' DataSource pool (test/processes/worker.ts: `extra: { max: 4 }`) and their test source's pool. */
const POOL_MAX = 4;
const TRUTH_POOL_MAX = 2;
/**
 * Lookups in flight per process (= its pool size). Ours and the raw baseline take turns: after
 * a warm-up window each, LOOKUP_ROUNDS windows of LOOKUP_ROUND_MS each, alternating which goes
 * first, so that both see the same machine (others' load comes and goes on a shared box).
 */
const CONCURRENCY = POOL_MAX;
const LOOKUP_ROUNDS = 3;
const LOOKUP_ROUND_MS = 1_000;
const LOOKUP_MS = LOOKUP_ROUNDS * LOOKUP_ROUND_MS;
const LOOKUP_WARMUP_MS = 500;
const HIT_ROWS = 64;
if (HIT_ROWS % CONCURRENCY) throw new Error('each lookup loop takes every CONCURRENCY-th row: HIT_ROWS must be a multiple of it');
/** Workers started at once: on a small machine 16 ts-node processes compiling together would hit the harness's start timeout. */
const SPAWN_PARALLEL = 4;
/** On a server shared with others (DATABASE_URL), connections left for them. */
const SHARED_HEADROOM = 10;

const benchStarted = performance.now();

const LISTENER_NAME = 'mc-scale-listener';
const RELAY_NAME = 'mc-scale-relay';
const RAW_PREFIX = 'mc-scale-raw';
const MONITOR_NAME = 'mc-scale-monitor';
const RAW_CHANNEL = 'mc_scale_raw';
/** The primary-key select of a table hit, as the table benchmark's baseline (sent here as a named prepared statement, as ours is). */
const PK_SELECT = `SELECT url, realm, scope, alias, definitions, deps, error, created_at FROM module_cache_entries WHERE url_hash = md5($1)::uuid AND scope = $2`;

interface Timed {
  type: string;
  at: number;
  urls?: string[];
}

interface LoopResult {
  count: number;
  total: number;
}

// ---- connections ----------------------------------------------------------------------------

/** Backends the processes under test hold: the bench's own clients and the workers' test source are left out. */
async function backends(monitor: Client): Promise<{ total: number; dedicated: number }> {
  const { rows } = await monitor.query<{ total: number; dedicated: number }>(
    `SELECT count(*)::int AS total, (count(*) FILTER (WHERE application_name IN ($1, $2)))::int AS dedicated
       FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
        AND application_name NOT LIKE $3 AND application_name NOT LIKE 'truth-%' AND application_name <> $4`,
    [LISTENER_NAME, RELAY_NAME, `${RAW_PREFIX}%`, MONITOR_NAME],
  );
  return rows[0];
}

/** Samples backends() every 200 ms until stopped; the peak. */
function sampleBackends(monitor: Client): { stop(): Promise<{ total: number; dedicated: number }> } {
  let running = true;
  const peak = { total: 0, dedicated: 0 };
  const loop = (async () => {
    while (running) {
      const b = await backends(monitor);
      if (b.total > peak.total) Object.assign(peak, b);
      await sleep(200);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      const b = await backends(monitor);
      if (b.total > peak.total) Object.assign(peak, b);
      return peak;
    },
  };
}

async function waitForBackends(monitor: Client, ok: (b: { total: number; dedicated: number }) => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const b = await backends(monitor);
    if (ok(b)) return;
    if (performance.now() > deadline) throw new Error(`${what}: still ${b.total} backends (${b.dedicated} dedicated) after 10 s`);
    await sleep(100);
  }
}

interface Budget {
  max: number;
  reserved: number;
  inUse: number;
  headroom: number;
  available: number;
}

/** Connections this run may open: max_connections less the reserved ones, those in use and (on a shared server) some headroom. */
async function connectionBudget(monitor: Client, shared: boolean): Promise<Budget> {
  const { rows } = await monitor.query<{ max: number; su: number; reserved: number; in_use: number }>(
    `SELECT current_setting('max_connections')::int AS max,
            current_setting('superuser_reserved_connections')::int AS su,
            coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
            (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use`,
  );
  const { max, su, reserved, in_use } = rows[0];
  const headroom = shared ? SHARED_HEADROOM : 0;
  return { max, reserved: su + reserved, inUse: in_use, headroom, available: max - su - reserved - in_use - headroom };
}

/**
 * Connections one step needs at most: the processes' pools and dedicated connections (and their
 * test source's pool), plus whichever baseline runs beside them: n raw lookup processes' pools,
 * or n + 1 raw NOTIFY clients. On a small server a step measures what fits: ours alone if need be.
 */
const needs = {
  ours: (mode: ScaleMode, n: number) => (mode === 'relay' ? n * POOL_MAX + 1 : n * (POOL_MAX + 1)) + TRUTH_POOL_MAX,
  rawLookups: (n: number) => n * POOL_MAX,
  rawNotify: (n: number) => n + 1,
};
const plural = (n: number) => `${n} process${n === 1 ? '' : 'es'}`;

// ---- the processes under test ----------------------------------------------------------------

interface Fleet {
  mode: ScaleMode;
  /** The live processes, in order. */
  workers: WorkerHandle[];
  /** Stops all but the first `n`. */
  shrink(n: number, monitor: Client): Promise<void>;
  stop(): Promise<void>;
}

async function startFleet(mode: ScaleMode, count: number, url: string): Promise<Fleet> {
  if (mode === 'relay') {
    const cluster: ClusterHandle = await spawnCluster(
      count,
      url,
      { realms: [REALM], memory: false, listener: { relay: true } },
      RELAY_NAME,
    );
    onCleanup('the cluster', () => cluster.stop());
    const workers = [...cluster.workers];
    return {
      mode,
      workers,
      async shrink(n, monitor) {
        const leaving = workers.splice(n);
        // The primary passes commands through: `exit` makes a worker close its app and exit.
        for (const w of leaving) cluster.primary.send({ worker: Number(w.name.slice(1)), id: 0, cmd: 'exit', args: [] });
        const deadline = performance.now() + 20_000;
        for (const w of leaving) {
          while (alive(w.pid)) {
            if (performance.now() > deadline) throw new Error(`cluster worker ${w.name} (pid ${w.pid}) did not exit`);
            await sleep(50);
          }
        }
        await waitForBackends(monitor, (b) => b.total <= n * POOL_MAX + 1, `after stopping cluster workers down to ${n}`);
      },
      stop: () => cluster.stop(),
    };
  }
  const workers: WorkerHandle[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(SPAWN_PARALLEL, count) }, async () => {
      while (next < count) {
        const i = next++;
        const worker = await spawnWorker(`s${i}`, url, { realms: [REALM], memory: false, listener: { applicationName: LISTENER_NAME } });
        onCleanup(`worker process ${worker.name}`, () => worker.stop());
        workers[i] = worker;
      }
    }),
  );
  return {
    mode,
    workers,
    async shrink(n, monitor) {
      await Promise.all(workers.splice(n).map((w) => w.stop()));
      await waitForBackends(monitor, (b) => b.dedicated === n, `after stopping workers down to ${n}`);
    },
    async stop() {
      await Promise.all(workers.splice(0).map((w) => w.stop()));
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---- propagation ------------------------------------------------------------------------------

interface Propagation {
  latencies: number[];
  missing: number;
  negative: number;
  gapMs: number;
  callP50: number;
}

/**
 * `count` invalidations one at a time, rotating the invalidating process, `gapMs` apart; then the
 * `remote-invalidated` arrivals collected from every process: one latency per invalidation, the
 * latest of the other processes' arrivals less the call's start.
 */
async function invalidationRound(workers: WorkerHandle[], count: number, gapMs: number, tag: string) {
  const n = workers.length;
  const calls: Array<{ url: string; from: number; start: number; duration: number }> = [];
  for (let i = 0; i < count; i++) {
    const from = i % n;
    const url = `${REALM}scale/${tag}/module-${i}.gts`;
    const call = await workers[from].call<{ start: number; end: number }>('timedInvalidate', url);
    calls.push({ url, from, start: call.start, duration: call.end - call.start });
    if (gapMs) await sleep(gapMs);
  }
  const arrivals = workers.map(() => new Map<string, number>());
  const complete = (c: (typeof calls)[number]) => arrivals.every((a, j) => j === c.from || a.has(c.url));
  const deadline = performance.now() + 5_000;
  do {
    await sleep(150);
    const events = await Promise.all(workers.map((w) => w.call<Timed[]>('timedEvents')));
    events.forEach((list, j) => {
      for (const e of list) {
        if (e.type !== 'remote-invalidated') continue;
        for (const u of e.urls ?? []) if (!arrivals[j].has(u)) arrivals[j].set(u, e.at);
      }
    });
  } while (!calls.every(complete) && performance.now() < deadline);
  const latencies: number[] = [];
  let missing = 0;
  for (const c of calls) {
    if (!complete(c)) {
      missing++;
      continue;
    }
    let latest = -Infinity;
    arrivals.forEach((a, j) => {
      if (j !== c.from) latest = Math.max(latest, a.get(c.url)! - c.start);
    });
    latencies.push(latest);
  }
  return { latencies, missing, durations: calls.map((c) => c.duration) };
}

async function propagation(workers: WorkerHandle[], tag: string): Promise<Propagation> {
  await Promise.all(workers.map((w) => w.call('timedEvents'))); // what came before is not ours
  const warm = await invalidationRound(workers, WARMUP, 5, `${tag}/warm`);
  // Pause about as long as an invalidation takes to reach everyone, so that they do not queue behind each other.
  const gapMs = warm.latencies.length ? Math.min(50, Math.max(3, Math.ceil(summarize(warm.latencies).p99))) : 50;
  const round = await invalidationRound(workers, SAMPLES, gapMs, `${tag}/sample`);
  return {
    latencies: round.latencies,
    missing: round.missing,
    negative: round.latencies.filter((l) => l < 0).length,
    gapMs,
    callP50: summarize(round.durations).p50,
  };
}

/** A pg client for a baseline, ended when done (and at cleanup if we die first). */
async function rawClient(url: string, name: string): Promise<Client & { done(): Promise<void> }> {
  const client = new Client({ connectionString: url, application_name: name });
  client.on('error', () => undefined);
  await client.connect();
  let ended = false;
  const done = async () => {
    if (ended) return;
    ended = true;
    await client.end();
  };
  onCleanup(`pg client ${name}`, done);
  return Object.assign(client, { done });
}

/**
 * Raw NOTIFY fan-out: `n` pg clients LISTEN, another sends one NOTIFY at a time (`gapMs` after
 * the previous one reached them all); latency until all but one of them received it (the one
 * left out rotates, as the invalidating process does in ours: its own listener hears its echo,
 * which nobody waits for).
 */
async function rawFanOut(url: string, n: number, gapMs: number): Promise<{ latencies: number[]; missing: number }> {
  const listeners = await Promise.all(Array.from({ length: n }, (_, i) => rawClient(url, `${RAW_PREFIX}-listen-${i}`)));
  const notifier = await rawClient(url, `${RAW_PREFIX}-notify`);
  try {
    await Promise.all(listeners.map((l) => l.query(`LISTEN ${RAW_CHANNEL}`)));
    let expected = '';
    let arrivals: number[] = [];
    let got = 0;
    let allArrived: (() => void) | undefined;
    listeners.forEach((l, k) =>
      l.on('notification', (message) => {
        const at = wallClock();
        if (message.channel !== RAW_CHANNEL || message.payload !== expected || arrivals[k] !== undefined) return;
        arrivals[k] = at;
        if (++got === n) allArrived?.();
      }),
    );
    const latencies: number[] = [];
    let missing = 0;
    for (let i = 0; i < WARMUP + SAMPLES; i++) {
      await sleep(gapMs);
      expected = `raw-${i}`;
      arrivals = new Array(n);
      got = 0;
      const all = new Promise<void>((resolve) => (allArrived = resolve));
      const sent = wallClock();
      await notifier.query('SELECT pg_notify($1, $2)', [RAW_CHANNEL, expected]);
      await Promise.race([all, sleep(5_000)]);
      if (i < WARMUP) continue;
      if (got < n) {
        missing++;
        continue;
      }
      let latest = -Infinity;
      arrivals.forEach((at, k) => {
        if (k !== i % n) latest = Math.max(latest, at - sent);
      });
      latencies.push(latest);
    }
    return { latencies, missing };
  } finally {
    await Promise.all([...listeners, notifier].map((c) => c.done()));
  }
}

// ---- table hits ---------------------------------------------------------------------------------

/** A window a little in the future, so that every process starts looking up at the same wall-clock time. */
const lookupWindow = (n: number, length: number) => {
  const from = wallClock() + 100 + 5 * n;
  return { from, until: from + length };
};

/** Table hits in the processes under test and the raw PK select in as many plain processes, taking turns. */
async function lookups(workers: WorkerHandle[], raws: RawProcess[], urls: string[]) {
  const n = workers.length;
  const before = await Promise.all(workers.map((w) => w.call<ModuleCacheStats>('stats')));
  const ours = (length: number) => {
    const { from, until } = lookupWindow(n, length);
    return Promise.all(workers.map((w) => w.call<LoopResult>('lookupLoop', urls, from, until, CONCURRENCY)));
  };
  const raw = (length: number) => {
    const { from, until } = lookupWindow(n, length);
    return Promise.all(raws.map((p) => p.run(from, until, urls)));
  };
  const oursRuns = [await ours(LOOKUP_WARMUP_MS)];
  if (raws.length) await raw(LOOKUP_WARMUP_MS);
  const perProcess = workers.map(() => 0);
  let oursCount = 0;
  let rawCount = 0;
  let wrong = 0;
  for (let round = 0; round < LOOKUP_ROUNDS; round++) {
    const turns = [
      async () => {
        const results = await ours(LOOKUP_ROUND_MS);
        oursRuns.push(results);
        results.forEach((r, i) => ((perProcess[i] += r.count), (oursCount += r.count)));
      },
      async () => {
        if (!raws.length) return;
        for (const r of await raw(LOOKUP_ROUND_MS)) {
          rawCount += r.count;
          wrong += r.wrong;
        }
      },
    ];
    if (round % 2) turns.reverse();
    for (const turn of turns) await turn();
  }
  if (wrong) throw new Error(`raw lookups: ${wrong} selects did not return exactly one row`);
  const after = await Promise.all(workers.map((w) => w.call<ModuleCacheStats>('stats')));
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const lookedUp = sum(oursRuns.flatMap((run) => run.map((r) => r.total)));
  const tableHits = sum(after.map((s, i) => s.hits.table - before[i].hits.table));
  const other = sum(after.map((s, i) => s.computes - before[i].computes + s.hits.memory - before[i].hits.memory));
  const seconds = LOOKUP_MS / 1000;
  return {
    perSecond: oursCount / seconds,
    rawPerSecond: raws.length ? rawCount / seconds : null,
    minProcess: Math.min(...perProcess) / seconds,
    maxProcess: Math.max(...perProcess) / seconds,
    allTableHits: tableHits === lookedUp && other === 0,
    check: `${lookedUp} lookups, ${tableHits} table hits, ${other} computations or memory hits`,
  };
}

/** A plain Node process with a `pg` Pool (no Nest, no ts-node) running the PK select in loops, as lookupLoop does. */
const RAW_LOOKUP_CHILD = `
const { Pool } = require('pg');
const pool = new Pool({ connectionString: process.env.SCALE_DB_URL, max: Number(process.env.SCALE_POOL_MAX), application_name: process.env.SCALE_APP });
pool.on('error', () => {});
const now = () => performance.timeOrigin + performance.now();
process.on('message', async ({ urls, from, until, concurrency, sql }) => {
  try {
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, from - now())));
    let count = 0, total = 0, wrong = 0;
    const loop = async (_, j) => {
      for (let k = j; now() < until; k += concurrency) {
        const { rows } = await pool.query({ name: 'scale_pk_select', text: sql, values: [urls[k % urls.length], 'public'] });
        if (rows.length !== 1) wrong++;
        total++;
        if (now() <= until) count++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    if (process.connected) process.send({ count, total, wrong });
  } catch (error) {
    if (process.connected) process.send({ error: String((error && error.message) || error) });
  }
});
process.on('disconnect', () => pool.end().finally(() => process.exit(0)));
process.send({ ready: true });
`;

interface RawProcess {
  child: ChildProcess;
  run(from: number, until: number, urls: string[]): Promise<LoopResult & { wrong: number }>;
  stop(): Promise<void>;
}

async function spawnRawLookups(url: string, i: number): Promise<RawProcess> {
  const child = spawn(process.execPath, ['-e', RAW_LOOKUP_CHILD], {
    cwd: join(__dirname, '..'),
    env: { ...process.env, SCALE_DB_URL: url, SCALE_POOL_MAX: String(POOL_MAX), SCALE_APP: `${RAW_PREFIX}-lookups-${i}` },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    if (child.connected) child.disconnect();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  onCleanup(`raw lookup process ${i}`, stop);
  const next = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const onExit = () => reject(new Error(`raw lookup process ${i} exited`));
      child.once('exit', onExit);
      child.once('message', (m) => {
        child.off('exit', onExit);
        resolve(m as Record<string, unknown>);
      });
    });
  await next();
  return {
    child,
    async run(from, until, urls) {
      const answer = next();
      child.send({ urls, from, until, concurrency: CONCURRENCY, sql: PK_SELECT });
      const m = await answer;
      if (m.error) throw new Error(`raw lookup process ${i}: ${String(m.error)}`);
      return m as unknown as LoopResult & { wrong: number };
    },
    stop,
  };
}

// ---- the run ----------------------------------------------------------------------------------

runBench('scale', async () => {
  const shared = Boolean(process.env.DATABASE_URL);
  const db = await benchDatabase();
  const monitor = await benchClient(db.url, MONITOR_NAME);
  const budget = await connectionBudget(monitor, shared);
  const notes: string[] = [];
  progress(
    `connection budget: max_connections ${budget.max}, ${budget.reserved} reserved, ${budget.inUse} in use` +
      `${budget.headroom ? `, ${budget.headroom} left for others` : ''}: ${budget.available} for this run`,
  );

  const fits = (connections: number) => connections <= budget.available;
  const tooMany = (connections: number) =>
    `needs up to ${connections} connections, ${budget.available} available ` +
    `(max_connections ${budget.max} − ${budget.reserved} reserved − ${budget.inUse} in use${budget.headroom ? ` − ${budget.headroom} headroom` : ''})`;

  // Rows every lookup finds in the table (memory: false in every worker, so each lookup reads its row).
  const urls = Array.from({ length: HIT_ROWS }, (_, i) => `${REALM}hits/module-${i}.gts`);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url) SELECT unnest($1::text[])`, [urls]);
  let populated = false;

  const rows = new Map<string, ScaleRow>();
  const key = (mode: ScaleMode, n: number) => `${mode}/${n}`;
  const offsets: string[] = [];

  const measureMode = async (mode: ScaleMode) => {
    const counts = [...COUNTS]
      .sort((a, b) => b - a)
      .filter((n) => {
        if (fits(needs.ours(mode, n))) return true;
        const why = tooMany(needs.ours(mode, n));
        rows.set(key(mode, n), { ...emptyRow(mode, n), skipped: why });
        notes.push(`${MODE_LABEL[mode]}, ${plural(n)}: not measured: ${why}`);
        progress(`${MODE_LABEL[mode]}, ${plural(n)}: skipped, ${why}`);
        return false;
      });
    if (counts.length === 0) return;
    const label = MODE_LABEL[mode];
    const spawnStarted = performance.now();
    progress(`${label}: starting ${counts[0]} processes${mode === 'relay' ? ' (a cluster primary with the relay, and its workers)' : ''}`);
    const fleet = await startFleet(mode, counts[0], db.url);
    progress(`${label}: ${counts[0]} processes up in ${((performance.now() - spawnStarted) / 1000).toFixed(1)} s`);
    if (!populated) {
      await fleet.workers[0].call('lookupAll', urls);
      const [{ n }] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM module_cache_entries');
      if (n !== HIT_ROWS) throw new Error(`expected ${HIT_ROWS} rows in the table, found ${n}`);
      populated = true;
    }
    const clocks = [];
    for (const w of fleet.workers) clocks.push(await clockOffset(w, 15));
    const worstOffset = Math.max(...clocks.map((c) => Math.abs(c.offset)));
    const worstUncertainty = Math.max(...clocks.map((c) => c.uncertainty));
    offsets.push(`${label}: largest clock offset of a process to the bench ${ms(worstOffset)} ± ${ms(worstUncertainty)} (IPC ping)`);

    // Largest count first, then fewer processes of the same fleet: each process is started once.
    for (const n of counts) {
      if (fleet.workers.length > n) await fleet.shrink(n, monitor);
      const workers = fleet.workers.slice(0, n);
      const sampler = sampleBackends(monitor);
      let ours: Propagation | undefined;
      let raw: { latencies: number[]; missing: number } | undefined;
      if (n > 1) {
        progress(`${label}, ${plural(n)}: ${WARMUP} + ${SAMPLES} invalidations, rotating the invalidating process`);
        ours = await propagation(workers, `${mode}-${n}`);
      }
      const rawLookupsFit = fits(needs.ours(mode, n) + needs.rawLookups(n));
      if (!rawLookupsFit) {
        const why = tooMany(needs.ours(mode, n) + needs.rawLookups(n));
        notes.push(`${label}, ${plural(n)}: raw pg lookups baseline not measured beside ours: ${why}`);
        progress(`${label}, ${plural(n)}: no raw lookups baseline, ${why}`);
      }
      progress(
        `${label}, ${plural(n)}: table-hit lookups, ${CONCURRENCY} in flight in each` +
          `${rawLookupsFit ? `, and the raw PK select from ${plural(n)}, taking turns` : ''}, ${LOOKUP_ROUNDS} × ${LOOKUP_ROUND_MS / 1000} s`,
      );
      const raws = rawLookupsFit ? await Promise.all(Array.from({ length: n }, (_, i) => spawnRawLookups(db.url, i))) : [];
      const hits = await lookups(workers, raws, urls).finally(() => Promise.all(raws.map((p) => p.stop())));
      const peak = await sampler.stop();
      if (ours && !fits(needs.ours(mode, n) + needs.rawNotify(n))) {
        const why = tooMany(needs.ours(mode, n) + needs.rawNotify(n));
        notes.push(`${label}, ${plural(n)}: raw NOTIFY baseline not measured beside ours: ${why}`);
        progress(`${label}, ${plural(n)}: no raw NOTIFY baseline, ${why}`);
      } else if (ours) {
        progress(`${label}, ${plural(n)}: baseline, raw NOTIFY to ${n} LISTENing pg clients, ${ours.gapMs} ms apart`);
        raw = await rawFanOut(db.url, n, ours.gapMs);
      }
      const o = ours && ours.latencies.length ? summarize(ours.latencies) : undefined;
      const r = raw && raw.latencies.length ? summarize(raw.latencies) : undefined;
      rows.set(key(mode, n), {
        mode,
        processes: n,
        p50Ms: o?.p50 ?? null,
        p99Ms: o?.p99 ?? null,
        samples: ours ? ours.latencies.length + ours.missing : 0,
        missing: ours?.missing ?? 0,
        gapMs: ours?.gapMs ?? null,
        rawP50Ms: r?.p50 ?? null,
        rawP99Ms: r?.p99 ?? null,
        lookupsPerSecond: hits.perSecond,
        rawLookupsPerSecond: hits.rawPerSecond,
        backends: peak.total,
        dedicatedBackends: peak.dedicated,
      });
      if (ours?.missing)
        notes.push(`${label}, ${plural(n)}: ${ours.missing} of ${SAMPLES} invalidations never reached every other process (within 5 s)`);
      if (raw?.missing) notes.push(`raw NOTIFY to ${n} clients (${mode} run): ${raw.missing} of ${SAMPLES} never reached all of them`);
      if (ours?.negative) notes.push(`${label}, ${plural(n)}: ${ours.negative} negative latencies (clocks disagree)`);
      if (!hits.allTableHits) notes.push(`${label}, ${plural(n)}: not every lookup was a table hit: ${hits.check}`);
      if (n > 1 && hits.maxProcess > 2 * hits.minProcess) {
        notes.push(
          `${label}, ${plural(n)}: uneven share of the lookups, ${perSecond(hits.minProcess)} to ${perSecond(hits.maxProcess)} per process`,
        );
      }
      progress(
        `${label}, ${plural(n)}: ` +
          `${o ? `propagation p50 ${ms(o.p50)} p99 ${ms(o.p99)} (raw ${ms(r?.p50 ?? null)} / ${ms(r?.p99 ?? null)}), invalidate() call p50 ${ms(ours!.callP50)}; ` : ''}` +
          `${perSecond(hits.perSecond)} table hits; ${peak.total} backends (${peak.dedicated} dedicated)`,
      );
    }
    await fleet.stop();
  };

  await measureMode('no-relay');

  await measureMode('relay');

  // ---- results ----
  const ordered: ScaleRow[] = (['no-relay', 'relay'] as const).flatMap((mode) =>
    COUNTS.map((n) => rows.get(key(mode, n)) ?? emptyRow(mode, n)),
  );
  const gaps = ordered.filter((r) => r.gapMs !== null).map((r) => `${r.mode} ${r.processes}: ${r.gapMs}`);
  const method = [
    'propagation: one process calls invalidate(url) (a URL without rows), the invalidating process rotating; latency = latest arrival among ' +
      "the other processes (their 'remote-invalidated' event, wall clock) − the call's start; n/a with 1 process: there is no other process",
    `raw NOTIFY baseline: n pg clients in the bench process LISTEN, one more sends pg_notify; latency until all but one (rotating) have it; ` +
      `one at a time, with the same pause as ours at that count (ms: ${gaps.join(', ')}: the warm-up's p99, 3 to 50)`,
    `table hits: every worker has memory: false, so each lookup reads its row (${HIT_ROWS} rows, each of the ${CONCURRENCY} loops of a process ` +
      `cycling through its own share); raw baseline: the same primary-key select as a named prepared statement from n plain node processes ` +
      `with a pg Pool of ${POOL_MAX}, ${CONCURRENCY} in flight each; ours and raw take turns, ${LOOKUP_ROUNDS} windows of ${LOOKUP_ROUND_MS / 1000} s each ` +
      `(after a ${LOOKUP_WARMUP_MS} ms warm-up window each), while the other side idles`,
    'backends: peak of pg_stat_activity rows for the bench database held by the processes under test (pools and dedicated connections; the ' +
      "bench's own clients and the workers' test source left out); the pools grow to their max during the lookups",
    `each process is started once: the largest count first, then stopped down to the smaller ones (relay: the same primary and relay throughout)`,
  ];
  const observations = [...offsets, ...notes];
  const cpu = cpus();
  const results: ScaleResults = {
    benchmark: 'scale',
    date: new Date().toISOString(),
    machine: {
      cpu: cpu[0]?.model.trim() ?? 'unknown CPU',
      cores: cpu.length,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      platform: `${platform()} ${release()}`,
    },
    postgres: `${db.serverVersion} (${shared ? 'DATABASE_URL' : 'embedded'})`,
    maxConnections: budget.max,
    seconds: 0,
    settings: {
      processCounts: COUNTS,
      samples: SAMPLES,
      warmup: WARMUP,
      lookupRounds: LOOKUP_ROUNDS,
      lookupRoundSeconds: LOOKUP_ROUND_MS / 1000,
      lookupConcurrency: CONCURRENCY,
      poolMax: POOL_MAX,
      hitRows: HIT_ROWS,
    },
    results: ordered,
    method,
    notes: observations,
  };

  const benchRows: BenchRow[] = [];
  const summary: BenchRow[] = [];
  for (const r of ordered) {
    const label = `${MODE_LABEL[r.mode]}, ${plural(r.processes)}`;
    const mine: BenchRow[] = [
      {
        measure: `propagation p50 / p99, ${label} (invalidate() → every other process applied it)`,
        ours: r.skipped ? `skipped: ${r.skipped}` : r.processes === 1 ? 'n/a (no other process)' : `${ms(r.p50Ms)} / ${ms(r.p99Ms)}`,
        baseline: r.rawP50Ms === null ? 'n/a' : `${ms(r.rawP50Ms)} / ${ms(r.rawP99Ms)} (raw NOTIFY to ${r.processes} pg clients)`,
        ratio: r.p50Ms === null ? 'n/a' : `${ratio(r.p50Ms, r.rawP50Ms)} / ${ratio(r.p99Ms, r.rawP99Ms)}`,
        goal: '—',
      },
      {
        measure: `table-hit lookups/s summed over the processes, ${label}`,
        ours: perSecond(r.lookupsPerSecond),
        baseline: `${perSecond(r.rawLookupsPerSecond)} (raw pg PK select, ${plural(r.processes)})`,
        ratio: ratio(r.lookupsPerSecond, r.rawLookupsPerSecond),
        goal: '—',
      },
      {
        measure: `Postgres backends held (peak), ${label}`,
        ours: r.backends === null ? 'n/a' : `${r.backends} (${r.dedicatedBackends} dedicated)`,
        baseline: '—',
        ratio: '—',
        goal: '—',
      },
    ];
    benchRows.push(...mine);
    const largest = Math.max(...ordered.filter((x) => x.mode === r.mode && !x.skipped).map((x) => x.processes));
    if (r.processes === largest) summary.push(...mine);
  }

  results.seconds = (performance.now() - benchStarted) / 1000;
  await writeResults(results);
  await publish(results);
  progress(`wrote ${RESULTS_FILE}, ${CHART_FILE} and the table in docs/benchmarks.md`);
  return { rows: benchRows, summary, notes: [...method, ...observations] };
});

function emptyRow(mode: ScaleMode, processes: number): ScaleRow {
  return {
    mode,
    processes,
    p50Ms: null,
    p99Ms: null,
    samples: 0,
    missing: 0,
    gapMs: null,
    rawP50Ms: null,
    rawP99Ms: null,
    lookupsPerSecond: null,
    rawLookupsPerSecond: null,
    backends: null,
    dedicatedBackends: null,
  };
}
