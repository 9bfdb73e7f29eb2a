/**
 * One randomized multi-process run, recorded (see history.ts for the model and the clock):
 * `workers` worker processes (test/processes/worker.ts) each run `loops` random loops of
 * lookup(url) and updates (truth version + 1, then invalidate(url)) over pairs of modules (the
 * odd one imports the even one), while this process injects faults on a fixed schedule with
 * randomly chosen targets: SIGSTOP/SIGCONT of a worker for longer than the lease and for
 * shorter, SIGSTOP of one's listener backend for longer than the lease (a deaf peer; only when
 * this process may signal the server's processes), SIGKILL of one (respawned under a new name),
 * and connection cuts (`pg_terminate_backend` of a worker's listener, then of all its pooled
 * connections).
 * The histories come back over IPC (`historyDrain`, every 500 ms); a killed worker's last
 * undrained operations are lost with it, which only means fewer operations judged.
 */
import { spawnWorker, TRUTH_SQL, type WorkerHandle } from '../processes/harness';
import type { Op } from './history';

export const HISTORY_REALM = 'https://example.test/history/';

export interface RecordedRunOptions {
  databaseUrl: string;
  query<T extends Record<string, unknown> = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  consistency: 'strong' | 'eventual';
  /** Names the workers' listeners and pools (`mc-<label>-<worker>`), so faults can find their backends. */
  label: string;
  workers?: number;
  seconds?: number;
  modules?: number;
  loops?: number;
  updateRatio?: number;
  /** Each loop pauses up to this long between operations (keeps a 2-core machine responsive). */
  pauseMs?: number;
  /** Strong mode's lease (heartbeat 1 s + 1 s). */
  leaseMs?: number;
  faults?: boolean;
  log?: (line: string) => void;
}

export interface Fault {
  /** Seconds since the run started. */
  at: number;
  kind: 'freeze-long' | 'freeze-short' | 'kill' | 'cut-listener' | 'cut-all' | 'deaf-listener';
  target: string;
  detail: string;
  /** Wall clock (as the histories) when it was injected, and when a freeze ended. */
  start: number;
  end?: number;
}

export interface RecordedRun {
  ops: Op[];
  leaseMs: number;
  faults: Fault[];
  /** Spread (max − min) of the workers' clock errors against the kernel's realtime clock, at their start and at the end, in ms. */
  toleranceMs: number;
  workers: string[];
  seconds: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const now = () => performance.timeOrigin + performance.now();
const pick = <T>(list: T[]): T => list[Math.floor(Math.random() * list.length)];

export async function recordHistory(o: RecordedRunOptions): Promise<RecordedRun> {
  const count = o.workers ?? 4;
  const seconds = o.seconds ?? 30;
  const modules = o.modules ?? 24;
  const leaseMs = o.leaseMs ?? 3_000;
  const log = o.log ?? (() => undefined);
  const url = (i: number) => `${HISTORY_REALM}m${i}.ts`;
  const urls = Array.from({ length: modules }, (_, i) => url(i));

  await o.query(TRUTH_SQL);
  await o.query(`DELETE FROM truth WHERE url LIKE $1 || '%'`, [HISTORY_REALM]);
  await o.query(
    `INSERT INTO truth (url, deps)
     SELECT $1 || 'm' || i || '.ts', CASE WHEN i % 2 = 1 THEN ARRAY[$1 || 'm' || (i - 1) || '.ts'] ELSE '{}'::text[] END
       FROM generate_series(0, $2 - 1) i`,
    [HISTORY_REALM, modules],
  );

  const listenerName = (name: string) => `mc-${o.label}-${name}`;
  const poolPrefix = `mc-${o.label}-pool-`;
  const spawn = (name: string) =>
    spawnWorker(
      name,
      o.databaseUrl,
      {
        realms: [HISTORY_REALM],
        consistency: o.consistency,
        ...(o.consistency === 'strong' ? { leaseMs } : {}),
        listener: { applicationName: listenerName(name), heartbeat: { intervalMs: 1_000, timeoutMs: 1_000 } },
      },
      { pool: { applicationNamePrefix: poolPrefix } },
    );

  const live = new Map<string, WorkerHandle>();
  const everyone: WorkerHandle[] = [];
  const frozen = new Set<number>();
  /** Workers whose listener backend is stopped (the kill spares them: their deafness should play out). */
  const deaf = new Set<number>();
  const ops: Op[] = [];
  const faults: Fault[] = [];
  const drains: Promise<void>[] = [];
  let toleranceMs = 0;
  let until = Infinity;
  let started = 0;

  const clockErrors: number[] = [];
  const measure = async (w: WorkerHandle) => {
    clockErrors.push(await w.call<number>('clockError'));
    toleranceMs = Math.max(...clockErrors) - Math.min(...clockErrors);
  };
  const run = (w: WorkerHandle) =>
    w.call('historyRun', { urls, until, loops: o.loops ?? 3, updateRatio: o.updateRatio ?? 0.03, pauseMs: o.pauseMs ?? 5 });
  const killed = new Set<WorkerHandle>();
  const drain = async (w: WorkerHandle) => {
    // A send on the channel of a process killed but not yet reaped would be an unhandled 'error' event.
    w.child.on('error', () => undefined);
    try {
      while (!killed.has(w)) {
        const { ops: batch, running } = await w.call<{ ops: Op[]; running: number }>('historyDrain');
        ops.push(...batch);
        if (now() >= until && running === 0) return;
        await sleep(500);
      }
    } catch {
      // Killed: what it had not handed over yet is lost with it.
    }
  };
  const fault = (kind: Fault['kind'], target: string, detail: string) => {
    const f: Fault = { at: (now() - started) / 1000, kind, target, detail, start: now() };
    faults.push(f);
    log(`[history] ${f.at.toFixed(1)} s: ${kind} ${target} (${detail})`);
    return f;
  };
  const freeze = async (w: WorkerHandle, ms: number, kind: 'freeze-long' | 'freeze-short') => {
    const f = fault(kind, w.name, `SIGSTOP for ${ms} ms, lease ${leaseMs} ms`);
    process.kill(w.pid, 'SIGSTOP');
    frozen.add(w.pid);
    await sleep(ms);
    process.kill(w.pid, 'SIGCONT');
    frozen.delete(w.pid);
    f.end = now();
  };
  const terminate = async (names: string[]) => {
    const rows = await o.query<{ n: number }>(
      `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = ANY($1)`,
      [names],
    );
    return rows[0]?.n ?? 0;
  };

  const begun = now();
  try {
    const initial = await Promise.all(Array.from({ length: count }, (_, i) => spawn(`w${i}`)));
    for (const w of initial) {
      live.set(w.name, w);
      everyone.push(w);
    }
    if (o.consistency === 'strong') {
      for (let tries = 0; ; tries++) {
        const [{ n }] = await o.query<{ n: number }>(`SELECT count(*)::int AS n FROM module_cache_peers WHERE lease_expires_at > now()`);
        if (n >= count) break;
        if (tries > 300) throw new Error(`only ${n} of ${count} workers joined`);
        await sleep(100);
      }
    }
    // Warm every module everywhere, so memory has something to be stale with.
    await Promise.all(initial.map((w) => Promise.all(urls.map((u) => w.call('lookup', u)))));
    for (const w of initial) await measure(w);

    started = now();
    until = started + seconds * 1000;
    await Promise.all(initial.map(run));
    drains.push(...initial.map(drain));
    log(
      `[history] ${o.consistency}: ${count} workers × ${o.loops ?? 3} loops for ${seconds} s, ${modules} modules ` +
        `(set up in ${((started - begun) / 1000).toFixed(1)} s)`,
    );

    if (o.faults !== false) {
      const at = async (fraction: number) => sleep(Math.max(0, started + fraction * seconds * 1000 - now()));
      const target = () => pick([...live.values()]);
      let respawned = 0;
      const schedule: Array<Promise<unknown>> = [];
      await at(0.1);
      schedule.push(freeze(target(), Math.round(leaseMs * 0.3), 'freeze-short'));
      await at(0.2);
      const cutOff = target();
      fault('cut-listener', cutOff.name, `pg_terminate_backend: ${await terminate([listenerName(cutOff.name)])} backend(s)`);
      await at(0.3);
      schedule.push(freeze(target(), Math.round(leaseMs * 1.6), 'freeze-long'));
      await at(0.4);
      // A deaf peer: its listener's backend stopped (the server on this machine, and the right to signal it), for longer than the lease.
      const deafened = pick([...live.values()].filter((w) => !frozen.has(w.pid)));
      const [backend] = await o.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
        [listenerName(deafened.name)],
      );
      let signalled = false;
      try {
        if (backend) process.kill(backend.pid, 0);
        signalled = backend !== undefined;
      } catch {
        log(`[history] cannot signal the database server's processes: no deaf-listener fault`);
      }
      if (signalled) {
        const ms = Math.round(leaseMs * 1.3);
        const f = fault('deaf-listener', deafened.name, `listener backend ${backend.pid} SIGSTOP for ${ms} ms`);
        process.kill(backend.pid, 'SIGSTOP');
        frozen.add(backend.pid);
        deaf.add(deafened.pid);
        schedule.push(
          sleep(ms).then(() => {
            process.kill(backend.pid, 'SIGCONT');
            frozen.delete(backend.pid);
            deaf.delete(deafened.pid);
            f.end = now();
          }),
        );
      }
      await at(0.5);
      const victim = pick([...live.values()].filter((w) => !frozen.has(w.pid) && !deaf.has(w.pid)));
      fault('kill', victim.name, 'SIGKILL, respawned');
      live.delete(victim.name);
      killed.add(victim);
      victim.child.kill('SIGKILL');
      schedule.push(
        (async () => {
          await victim.exited;
          const fresh = await spawn(`${victim.name}r${++respawned}`);
          everyone.push(fresh);
          live.set(fresh.name, fresh);
          await measure(fresh);
          if (now() < until) {
            await run(fresh);
            drains.push(drain(fresh));
          }
        })(),
      );
      await at(0.65);
      const cut = target();
      fault(
        'cut-all',
        cut.name,
        `pg_terminate_backend: ${await terminate([listenerName(cut.name), `${poolPrefix}${cut.name}`])} backend(s)`,
      );
      await at(0.75);
      schedule.push(freeze(target(), Math.round(leaseMs * 1.2), 'freeze-long'));
      await at(0.9);
      schedule.push(freeze(target(), Math.round(leaseMs * 0.5), 'freeze-short'));
      await Promise.all(schedule);
    }
    await sleep(Math.max(0, until - now()));
    // Drains started late (the respawned worker) are in `drains` by now.
    for (let i = 0; i < drains.length; i++) await drains[i];
    // Clocks again at the end: a slew during the run shows as a wider spread.
    for (const w of live.values()) await measure(w);
    return { ops, leaseMs, faults, toleranceMs, workers: everyone.map((w) => w.name), seconds };
  } finally {
    for (const pid of frozen) process.kill(pid, 'SIGCONT');
    const stopping = now();
    await Promise.all(everyone.map((w) => w.stop().catch(() => undefined)));
    log(`[history] ${o.consistency}: workers stopped in ${((now() - stopping) / 1000).toFixed(1)} s`);
  }
}
