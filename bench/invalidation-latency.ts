/**
 * Cross-process invalidation latency: worker A calls invalidate(url); worker B's lookup
 * service emits `remote-invalidated` for that URL right after bumping its generations and
 * evicting memory. Both times are wall-clock (performance.timeOrigin + performance.now()) in
 * their own processes; the clock offset between them is measured and reported. Baseline: raw
 * one-way NOTIFY latency between two pg clients, measured in the same run.
 */
import {
  benchDatabase,
  benchWorkers,
  clockOffset,
  goal,
  ms,
  progress,
  rawNotifyLatency,
  REALM,
  runBench,
  sleep,
  summarize,
  times,
} from './support';

const SAMPLES = 300;
const WARMUP = 30;
/** Pause after each invalidation: B has long received it, so invalidations never queue. */
const GAP_MS = 3;

interface Timed {
  type: string;
  at: number;
  urls?: string[];
}

runBench('invalidation-latency', async () => {
  const db = await benchDatabase();
  progress('spawning worker processes A and B');
  const [a, b] = await benchWorkers(2, db.url, (i) => ({ realms: [REALM], listener: { applicationName: `mc-bench-latency-${i}` } }));
  const offsets = [await clockOffset(a), await clockOffset(b)];

  /** Invalidations in A, one at a time with `gapMs` pauses: how long until B applied each. */
  const measure = async (label: string, gapMs: number) => {
    progress(
      `${label}: ${WARMUP} warm-up + ${SAMPLES} invalidations in A, one at a time${gapMs ? `, ${gapMs} ms apart` : ', back to back'}`,
    );
    const calls = new Map<string, { start: number; end: number }>();
    for (let i = 0; i < WARMUP + SAMPLES; i++) {
      const url = `${REALM}latency/${label}/module-${i}.gts`;
      const call = await a.call<{ start: number; end: number }>('timedInvalidate', url);
      if (i >= WARMUP) calls.set(url, call);
      if (gapMs) await sleep(gapMs);
      if (i > 0 && i % 100 === 0) progress(`${i}/${WARMUP + SAMPLES}`);
    }
    await sleep(200);
    const arrivals = new Map<string, number>();
    for (const e of await b.call<Timed[]>('timedEvents')) {
      if (e.type === 'remote-invalidated') for (const url of e.urls ?? []) if (!arrivals.has(url)) arrivals.set(url, e.at);
    }
    const latencies: number[] = [];
    const durations: number[] = [];
    for (const [url, call] of calls) {
      const at = arrivals.get(url);
      if (at === undefined) throw new Error(`B never heard of ${url}`);
      latencies.push(at - call.start);
      durations.push(call.end - call.start);
    }
    return { latencies, durations };
  };
  const { latencies, durations } = await measure('paused', GAP_MS);
  const backToBack = summarize((await measure('back-to-back', 0)).latencies);

  progress(`baseline: raw one-way NOTIFY latency between two pg clients, with the same ${GAP_MS} ms pauses, and back to back`);
  const raw = summarize(await rawNotifyLatency(db.url, { samples: 300, gapMs: GAP_MS }));
  const hot = summarize(await rawNotifyLatency(db.url, { samples: 500 }));
  progress('third baseline: the same NOTIFY inside a minimal transaction (BEGIN; SELECT 1; NOTIFY; COMMIT)');
  const rawTx = summarize(await rawNotifyLatency(db.url, { samples: 300, inTransaction: true, gapMs: GAP_MS }));
  progress('fourth baseline: a durable NOTIFY, back to back (one statement that also inserts a log row, so its commit writes WAL)');
  const durable = summarize(await rawNotifyLatency(db.url, { samples: 500, durable: true }));
  const ours = summarize(latencies);
  const call = summarize(durations);
  const row = (measure: string, o: number, base: number, what: string, g = '—') => ({
    measure,
    ours: ms(o),
    baseline: `${ms(base)} (${what})`,
    ratio: times(o / base),
    goal: g === '—' ? g : goal(g, o / base <= 3),
  });
  const rows = [
    row(
      'cross-process invalidation latency p50 (A.invalidate() called → B bumped)',
      ours.p50,
      raw.p50,
      'raw NOTIFY, same pauses',
      'p50 ≤ 3×',
    ),
    row('cross-process invalidation latency p99', ours.p99, raw.p99, 'raw NOTIFY, same pauses'),
    row(
      'cross-process invalidation latency p50, back to back, vs back-to-back raw NOTIFY',
      backToBack.p50,
      hot.p50,
      'raw NOTIFY, back to back',
      'p50 ≤ 3×',
    ),
    row(
      'cross-process invalidation latency p50, back to back, vs a back-to-back durable NOTIFY (INSERT + NOTIFY, one statement)',
      backToBack.p50,
      durable.p50,
      'durable NOTIFY, back to back',
    ),
    row('cross-process invalidation latency p50 vs raw BEGIN; SELECT 1; NOTIFY; COMMIT', ours.p50, rawTx.p50, 'same pauses'),
    {
      measure: 'invalidate() call duration p50 / p99 (in A)',
      ours: `${ms(call.p50)} / ${ms(call.p99)}`,
      baseline: '—',
      ratio: '—',
      goal: '—',
    },
  ];
  return {
    rows,
    summary: [rows[0], rows[1], rows[2], rows[3], rows[5]],
    notes: [
      `${SAMPLES} invalidations (distinct URLs, no rows to delete) after ${WARMUP} warm-up; all ${SAMPLES} arrived in B`,
      `each invalidation here is one statement (no consumers: fan-out check, fence log, delete, NOTIFY; its commit flushes WAL): B can hear of it only after that commit`,
      `on this VM a round trip after an idle pause costs ~3× a back-to-back one, so the headline baseline pauses ${GAP_MS} ms before each NOTIFY as ours does between invalidations; the back-to-back rows (ours back to back too) are the strict reading`,
      `durability: an invalidation must commit a write (the fence log row, the delete) before anyone may hear of it, so its floor is a durable NOTIFY, not a bare one: ${ms(durable.p50)} vs ${ms(hot.p50)} here; ours back to back is ${times(backToBack.p50 / durable.p50)} that floor`,
      `clock offset to the bench process, A: ${ms(Math.abs(offsets[0].offset))} ± ${ms(offsets[0].uncertainty)}, B: ${ms(Math.abs(offsets[1].offset))} ± ${ms(offsets[1].uncertainty)} (IPC ping)`,
    ],
  };
});
