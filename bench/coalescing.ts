/**
 * Cross-process populate coalescing: 4 worker processes × 50 concurrent lookups of one fresh
 * key, over many rounds (a new key each). Counts the source computations per round (goal 1)
 * and the wake-up latency: the computing process's `persisted` event (its write committed) →
 * each waiting process's `coalesced` event with woken=true (it was woken and has read the row).
 * Baseline: raw one-way NOTIFY latency from the same run.
 */
import { TRUTH_SQL, type WorkerHandle } from '../test/processes/harness';
import { waitFor } from '../test/support/wait';
import { benchDatabase, benchWorkers, goal, ms, progress, rawNotifyLatency, REALM, runBench, sleep, summarize, times } from './support';

const PROCESSES = 4;
const CONCURRENT = 50;
const ROUNDS = 40;

interface Timed {
  type: string;
  at: number;
  url?: string;
  woken?: boolean;
}

/** One number from each worker. */
const fromEach = async (workers: WorkerHandle[], cmd: string, pick: (v: never) => number = (v) => v): Promise<number[]> =>
  Promise.all(workers.map(async (w) => pick((await w.call(cmd)) as never)));
const total = async (workers: WorkerHandle[], cmd: string): Promise<number> => (await fromEach(workers, cmd)).reduce((a, b) => a + b, 0);

runBench('coalescing', async () => {
  const db = await benchDatabase();
  await db.query(TRUTH_SQL);
  progress(`spawning ${PROCESSES} worker processes`);
  const workers = await benchWorkers(PROCESSES, db.url, (i) => ({
    realms: [REALM],
    listener: { applicationName: `mc-bench-coalesce-${i}` },
  }));

  const computations: number[] = [];
  const wakeUps: number[] = [];
  const toArrival: number[] = [];
  const toRead: number[] = [];
  let notWoken = 0;
  let callers = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    const url = `${REALM}coalesce/fresh-${round}.ts`;
    await db.query('INSERT INTO truth (url) VALUES ($1)', [url]);
    const callsBefore = await total(workers, 'sourceCalls');
    const missesBefore = await fromEach(workers, 'stats', (s: { misses: number }) => s.misses);
    await Promise.all(workers.map((w) => w.call('hold')));
    const lookups = workers.flatMap((w) => Array.from({ length: CONCURRENT }, () => w.call<{ url: string }>('lookup', url)));
    // One process computes (held at its source); every process has missed and is waiting or computing.
    await waitFor(async () => (await total(workers, 'waiting')) >= 1, 10_000, 'a computation');
    await waitFor(
      async () => (await fromEach(workers, 'stats', (s: { misses: number }) => s.misses)).every((m, i) => m > missesBefore[i]),
      10_000,
      'every process to miss',
    );
    await sleep(20); // the waiters are past their claim attempt and asleep
    await Promise.all(workers.map((w) => w.call('release')));
    const entries = await Promise.all(lookups);
    callers += entries.length;
    if (new Set(entries.map((e) => JSON.stringify(e))).size !== 1) throw new Error(`round ${round}: callers got different entries`);
    computations.push((await total(workers, 'sourceCalls')) - callsBefore);
    const perWorker = await Promise.all(workers.map((w) => w.call<Timed[]>('timedEvents')));
    const persisted = perWorker.flat().filter((e) => e.type === 'persisted' && e.url === url);
    if (persisted.length !== 1) throw new Error(`round ${round}: ${persisted.length} persists`);
    const committed = persisted[0].at;
    for (const events of perWorker) {
      const coalesced = events.find((e) => e.type === 'coalesced' && e.url === url);
      if (!coalesced) continue;
      if (!coalesced.woken) {
        notWoken++;
        continue;
      }
      wakeUps.push(coalesced.at - committed);
      // The wake-up NOTIFY's arrival in this waiter: splits the latency into release + delivery, and read.
      const wake = events.find((e) => e.type === 'raw-notification' && e.at >= committed && e.at <= coalesced.at);
      if (wake) {
        toArrival.push(wake.at - committed);
        toRead.push(coalesced.at - wake.at);
      }
    }
    if (round % 10 === 0) progress(`${round}/${ROUNDS} rounds`);
  }

  progress('baseline: raw one-way NOTIFY latency between two pg clients, after 20 ms pauses (as the waiters sleep) and back to back');
  const raw = summarize(await rawNotifyLatency(db.url, { samples: 300, gapMs: 20 }));
  const hot = summarize(await rawNotifyLatency(db.url, { samples: 500 }));
  const wake = summarize(wakeUps);
  const ones = computations.filter((c) => c === 1).length;
  const rows = [
    {
      measure: `computations for ${PROCESSES} processes × ${CONCURRENT} concurrent lookups of one fresh key`,
      ours: `${Math.max(...computations)} (max over ${ROUNDS} rounds)`,
      baseline: `${PROCESSES} (one per process without coalescing)`,
      ratio: '—',
      goal: goal('1', ones === ROUNDS),
    },
    {
      measure: 'wake-up latency p50 (computation committed → waiter resumed with the row)',
      ours: ms(wake.p50),
      baseline: `${ms(raw.p50)} (raw NOTIFY, same pauses)`,
      ratio: times(wake.p50 / raw.p50),
      goal: '—',
    },
    {
      measure: 'wake-up latency p99',
      ours: ms(wake.p99),
      baseline: `${ms(raw.p99)} (raw NOTIFY, same pauses)`,
      ratio: times(wake.p99 / raw.p99),
      goal: '—',
    },
    {
      measure: 'wake-up latency p50 vs back-to-back raw NOTIFY',
      ours: ms(wake.p50),
      baseline: `${ms(hot.p50)} (raw NOTIFY, back to back)`,
      ratio: times(wake.p50 / hot.p50),
      goal: '—',
    },
  ];
  return {
    rows,
    notes: [
      `${ROUNDS} rounds, ${callers} callers in all; exactly 1 computation in ${ones}/${ROUNDS} rounds; every caller of a round got the same entry`,
      `${wake.n} woken waiters measured (${notWoken} waiters found the row without being woken)`,
      `split (p50): committed → wake-up NOTIFY arrived in the waiter ${ms(summarize(toArrival).p50)}; arrived → waiter resumed with the row ${ms(summarize(toRead).p50)}`,
      'the waiters sleep ≥ 20 ms before they are woken; on this VM a round trip after an idle pause costs ~3× a back-to-back one, hence the paused baseline',
      'the source is held until every process has missed, so all 200 lookups are concurrent; the wake-up path is: release (NOTIFY + unlock, 1 round trip) → delivery to the waiter → the waiter reads the row (1 round trip)',
    ],
  };
});
