/**
 * Listener reconnect: the dedicated ListenConnection (constructed directly, default backoff:
 * initialDelayMs 100) whose backend is killed with pg_terminate_backend; time from
 * the kill until its state is 'listening' again. Baseline: what a reconnect costs without any
 * backoff — a fresh pg connect + LISTEN, measured in the same run.
 */
import { Client } from 'pg';
import { MODULE_CACHE_INVALIDATED_CHANNEL, type ListenerState } from '../src';
import { PgDedicatedConnection as ListenConnection } from '../src/connection/pg-connection';
import { benchClient, benchDatabase, ms, onCleanup, progress, runBench, sleep, summarize, times } from './support';

const KILLS = 10;
const APP = 'mc-bench-reconnect';
const BACKOFF = { initialDelayMs: 100, maxDelayMs: 10_000 };

runBench('reconnect', async () => {
  const db = await benchDatabase();
  const admin = await benchClient(db.url, 'module-cache-bench-admin');
  const listener = new ListenConnection({
    connection: { connectionString: db.url },
    channels: [MODULE_CACHE_INVALIDATED_CHANNEL],
    applicationName: APP,
    reconnect: BACKOFF,
    queryTimeoutMs: 5_000,
  });
  onCleanup('the listener', () => listener.stop());
  let changed: ((state: ListenerState) => void) | undefined;
  let resyncs = 0;
  listener.state$.subscribe((state) => changed?.(state));
  listener.resync$.subscribe(() => resyncs++);
  await listener.start();
  if (listener.state !== 'listening') throw new Error(`listener is ${listener.state}`);

  const samples: number[] = [];
  for (let kill = 1; kill <= KILLS; kill++) {
    await sleep(50);
    const listening = new Promise<number>((resolve) => (changed = (state) => state === 'listening' && resolve(performance.now())));
    const t = performance.now();
    const { rows } = await admin.query<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
      [APP],
    );
    if (rows.length !== 1 || !rows[0].ok) throw new Error(`expected one listener backend to kill, found ${rows.length}`);
    samples.push((await listening) - t);
    progress(`kill ${kill}/${KILLS}: listening again after ${ms(samples.at(-1)!)}`);
  }

  progress('baseline: a fresh pg connect + LISTEN, no backoff');
  const fresh: number[] = [];
  for (let i = 0; i < 30; i++) {
    await sleep(20);
    const t = performance.now();
    const client = new Client({ connectionString: db.url, application_name: 'module-cache-bench-fresh' });
    await client.connect();
    await client.query(`LISTEN ${MODULE_CACHE_INVALIDATED_CHANNEL}`);
    fresh.push(performance.now() - t);
    await client.end();
  }
  const [ours, base] = [summarize(samples), summarize(fresh)];
  const stats = { reconnects: listener.reconnects };
  const rows = [
    {
      measure: `listener backend killed → listening again, p50 (${KILLS} kills, backoff from ${BACKOFF.initialDelayMs} ms)`,
      ours: ms(ours.p50),
      baseline: `${ms(base.p50)} (connect + LISTEN)`,
      ratio: times(ours.p50 / base.p50),
      goal: '— (backoff: first retry after 50–100 ms)',
    },
    { measure: 'listener reconnect, max', ours: ms(ours.max), baseline: ms(base.max), ratio: '—', goal: '—' },
  ];
  return {
    rows,
    summary: rows.slice(0, 1),
    notes: [
      `reconnects counted by the listener: ${stats.reconnects}; resyncs emitted: ${resyncs} (1 at start + 1 per reconnect)`,
      'the first retry waits a jittered delay in [initialDelayMs/2, initialDelayMs], so most of the time is the deliberate backoff',
    ],
  };
});
