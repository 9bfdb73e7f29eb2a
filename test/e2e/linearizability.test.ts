import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { checkHistory, describeViolation, staleness, type Verdict } from '../support/history';
import { recordHistory, type RecordedRun } from '../support/history-run';

/**
 * Issue 21 item 1: recorded histories of randomized multi-process runs with faults (freezes
 * longer and shorter than the lease, a kill and respawn, connection cuts), checked by the model
 * in test/support/history.ts. Strong mode: no read that started after an invalidate() completed
 * sees an older version, in any process. Eventual mode: the same comparison measures staleness.
 */
const SECONDS = Number(process.env.HISTORY_SECONDS ?? 24);

let db: TestDatabase;
const out = (line: string) => process.stdout.write(`${line}\n`);

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
});

afterAll(async () => {
  await db?.drop();
});

function summary(mode: string, run: RecordedRun, verdict: Verdict): string {
  const kinds = new Map<string, number>();
  for (const f of run.faults) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
  return (
    `[linearizability] ${mode}: ${verdict.operations} operations (${verdict.reads} reads, ${verdict.updates} updates; ` +
    `failed: ${verdict.failedReads} reads, ${verdict.failedUpdates} updates) in ${run.seconds} s over ${run.workers.length} processes ` +
    `(${run.workers.join(', ')}); ${verdict.constrainedReads} reads constrained by a completed update; ` +
    `faults: ${run.faults.length} (${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}); clock tolerance ${run.toleranceMs.toFixed(2)} ms; ` +
    `violations: ${verdict.violations.length}`
  );
}

function failures(run: RecordedRun): string {
  const reasons = new Map<string, number>();
  for (const op of run.ops)
    if (!op.ok) {
      const reason = `${op.kind}: ${(op.error ?? 'no value').replace(/https?:\/\/\S+/g, '<url>').slice(0, 120)}`;
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    }
  return [...reasons].map(([r, n]) => `${n}× ${r}`).join('; ');
}

describe('recorded histories, checked (real processes, faults)', () => {
  it('strong: after invalidate() completed, no read that started later returns an older version, in any process', async () => {
    const run = await recordHistory({
      databaseUrl: db.url,
      query: db.query,
      consistency: 'strong',
      label: 'lin-strong',
      seconds: SECONDS,
      log: out,
    });
    const verdict = checkHistory(run.ops, { toleranceMs: run.toleranceMs });
    out(summary('strong', run, verdict));
    if (verdict.failedReads + verdict.failedUpdates) out(`[linearizability] strong: failures: ${failures(run)}`);
    // The moments strong mode is about: a process just thawed (after a long freeze its lease has lapsed).
    const thawed = run.faults.filter((f) => (f.kind === 'freeze-long' || f.kind === 'deaf-listener') && f.end !== undefined);
    const afterThaw = run.ops.filter(
      (op) =>
        op.kind === 'read' &&
        op.ok &&
        thawed.some((f) => op.process === f.target && op.invoke >= f.end! && op.invoke < f.end! + run.leaseMs),
    ).length;
    out(
      `[linearizability] strong: ${afterThaw} reads judged in a process within a lease after a freeze (of it or its listener) longer than the lease ended`,
    );
    for (const v of verdict.violations.slice(0, 5)) out(`[linearizability] VIOLATION ${describeViolation(v)}`);
    // The run judged something: reads after completed updates in every kind of process.
    expect(verdict.updates - verdict.failedUpdates).toBeGreaterThan(50);
    expect(verdict.constrainedReads).toBeGreaterThan(1000);
    // (The deaf listener needs the right to signal the server's processes.)
    expect(
      run.faults
        .map((f) => f.kind)
        .filter((k) => k !== 'deaf-listener')
        .sort(),
    ).toEqual(['cut-all', 'cut-listener', 'freeze-long', 'freeze-long', 'freeze-short', 'freeze-short', 'kill']);
    expect(afterThaw).toBeGreaterThan(0);
    expect(verdict.violations.map(describeViolation).slice(0, 5)).toEqual([]);
  }, 240_000);

  it('eventual: the same run shape measures the staleness window', async () => {
    const run = await recordHistory({
      databaseUrl: db.url,
      query: db.query,
      consistency: 'eventual',
      label: 'lin-eventual',
      seconds: Math.max(10, Math.round(SECONDS / 2)),
      log: out,
    });
    const verdict = checkHistory(run.ops, { toleranceMs: run.toleranceMs });
    const s = staleness(verdict);
    out(summary('eventual', run, verdict));
    if (verdict.failedReads + verdict.failedUpdates) out(`[linearizability] eventual: failures: ${failures(run)}`);
    out(
      `[linearizability] eventual: stale reads ${s.staleReads} of ${s.judgedReads} (${s.per10k.toFixed(1)} per 10k reads); ` +
        `staleness window p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms, max ${s.max.toFixed(1)} ms`,
    );
    for (const v of verdict.violations.slice(0, 3)) out(`[linearizability] eventual, stale: ${describeViolation(v)}`);
    expect(verdict.constrainedReads).toBeGreaterThan(500);
    // Eventual staleness is bounded: a notification or a heartbeat reaches every process that is running.
    expect(s.staleReads === 0 || s.max < 60_000).toBe(true);
  }, 240_000);
});
