/**
 * Eventual mode's staleness, measured on recorded histories (test/support/history-run.ts and
 * history.ts, the same run and checker as test/e2e/linearizability.test.ts): 4 worker processes
 * × 3 random loops of lookup / update-then-invalidate, first with no faults, then with the
 * fault schedule (freezes longer and shorter than a 3 s lease, a kill and respawn, connection
 * cuts). A read is stale when it started after an invalidate() of a newer version had completed
 * (in any process) and returned the older one; its window is how long after that completion it
 * started. STALENESS_SECONDS sets each run's length (default 15); STALENESS_STRONG=1 adds the
 * strong-mode run with faults (its stale reads are the checker's violations: 0 expected).
 */
import { checkHistory, describeViolation, staleness, type Staleness } from '../test/support/history';
import { recordHistory } from '../test/support/history-run';
import { benchDatabase, ms, progress, runBench, type BenchRow } from './support';

const SECONDS = Number(process.env.STALENESS_SECONDS ?? 15);

const row = (measure: string, ours: string): BenchRow => ({ measure, ours, baseline: '—', ratio: '—', goal: '—' });
const window = (value: number) => (Number.isNaN(value) ? 'none stale' : ms(value));

runBench('staleness', async () => {
  const db = await benchDatabase();
  const rows: BenchRow[] = [];
  const summary: BenchRow[] = [];
  const notes: string[] = [];
  const runs: Array<{ label: string; consistency: 'eventual' | 'strong'; faults: boolean }> = [
    { label: 'eventual, no faults', consistency: 'eventual', faults: false },
    { label: 'eventual, faults', consistency: 'eventual', faults: true },
    ...(process.env.STALENESS_STRONG ? [{ label: 'strong, faults', consistency: 'strong' as const, faults: true }] : []),
  ];
  for (const [i, r] of runs.entries()) {
    progress(`${r.label}: recording ${SECONDS} s`);
    const run = await recordHistory({
      databaseUrl: db.url,
      query: db.query,
      consistency: r.consistency,
      label: `stale${i}`,
      seconds: SECONDS,
      faults: r.faults,
      log: progress,
    });
    const verdict = checkHistory(run.ops, { toleranceMs: run.toleranceMs });
    const s: Staleness = staleness(verdict);
    progress(
      `${r.label}: ${verdict.operations} operations, ${verdict.updates} updates, ${s.judgedReads} reads judged, ` +
        `${s.staleReads} stale, ${run.faults.length} faults`,
    );
    for (const v of verdict.violations.slice(0, 2)) progress(`  stale: ${describeViolation(v)}`);
    const per10k = row(`${r.label}: stale reads per 10k`, `${s.per10k.toFixed(1)} (${s.staleReads} of ${s.judgedReads})`);
    const bound = row(`${r.label}: staleness bound observed (max)`, window(s.max));
    rows.push(
      per10k,
      row(`${r.label}: staleness window p50`, window(s.p50)),
      row(`${r.label}: staleness window p99`, window(s.p99)),
      bound,
    );
    summary.push(per10k, bound);
    notes.push(
      `${r.label}: ${verdict.operations} operations over ${run.workers.length} processes in ${run.seconds} s, ` +
        `${run.faults.length} faults (${run.faults.map((f) => f.kind).join(', ') || 'none'}), clock tolerance ${ms(run.toleranceMs)}`,
    );
  }
  return { rows, summary, notes };
});
