/**
 * Recorded histories of randomized multi-process runs, and the checker they are judged by.
 *
 * Every operation is recorded in the worker process that ran it (test/processes/worker.ts,
 * `historyRun`), with invoke and complete times on `performance.timeOrigin + performance.now()`:
 * monotonic within a process (it keeps counting through SIGSTOP), aligned to the wall clock
 * when the process started. Processes on one machine then agree to well under a millisecond
 * unless the wall clock was stepped between their starts. The run checks that assumption: each
 * worker measures its clock against the kernel's realtime clock (`clockError`, no IPC latency
 * involved) at its start and at the end, and the checker only counts a read as "after" an
 * update when it started more than `toleranceMs` (the spread of those errors) after the update
 * completed, so skew can hide a violation but never invent one.
 *
 * The model (strong mode): an update of module u is `UPDATE truth SET version = version + 1`
 * (the version it made current, v) then `invalidate(u)`. Once that invalidate() completed, every
 * read that starts later, in any process, and sees u (as the module it looked up, or as a direct
 * import in `depVersions`) must see a version ≥ v. A process whose lease lapsed must not answer
 * from memory at all, so no read is excused. In eventual mode the same comparison measures the
 * staleness window: how long after the (earliest) update it missed had completed a stale read started.
 */
export interface ReadOp {
  kind: 'read';
  process: string;
  /** The module looked up. */
  url: string;
  /** The versions the returned entry carries: its own (under `url`) and its direct imports'. */
  seen?: Record<string, number>;
  invoke: number;
  complete: number;
  ok: boolean;
  error?: string;
}

export interface UpdateOp {
  kind: 'update';
  process: string;
  url: string;
  /** The truth version written before invalidate() was called (undefined when the UPDATE itself failed). */
  version?: number;
  invoke: number;
  complete: number;
  /** invalidate() resolved. */
  ok: boolean;
  error?: string;
}

export type Op = ReadOp | UpdateOp;

export interface Violation {
  read: ReadOp;
  /** The module the read saw too old. */
  url: string;
  seen: number;
  /** The highest version of `url` whose invalidate() had completed before the read started. */
  required: number;
  /** That update. */
  update: UpdateOp;
  /** Read start − completion of the earliest completed update the read missed (the staleness window). */
  staleForMs: number;
}

export interface Verdict {
  operations: number;
  reads: number;
  updates: number;
  failedReads: number;
  failedUpdates: number;
  /** Reads that saw at least one module which had a completed update before they started (the ones the model constrains). */
  constrainedReads: number;
  /** One per (read, module) seen too old. */
  violations: Violation[];
  /** Reads with at least one violation. */
  staleReads: number;
  /** Per stale read, its largest staleForMs. */
  windows: number[];
}

interface Completed {
  complete: number;
  version: number;
  op: UpdateOp;
}

/** Per module: completed updates by completion time (with the running maximum version), and by version (with the earliest completion at or above it). */
interface ModuleIndex {
  byTime: Completed[];
  maxUpTo: Completed[];
  byVersion: Completed[];
  earliestFrom: number[];
}

function index(updates: UpdateOp[]): Map<string, ModuleIndex> {
  const per = new Map<string, Completed[]>();
  for (const op of updates) {
    if (!op.ok || op.version === undefined) continue;
    if (!per.has(op.url)) per.set(op.url, []);
    per.get(op.url)!.push({ complete: op.complete, version: op.version, op });
  }
  const out = new Map<string, ModuleIndex>();
  for (const [url, list] of per) {
    const byTime = [...list].sort((a, b) => a.complete - b.complete);
    const maxUpTo: Completed[] = [];
    for (const c of byTime)
      maxUpTo.push(maxUpTo.length && maxUpTo[maxUpTo.length - 1].version >= c.version ? maxUpTo[maxUpTo.length - 1] : c);
    const byVersion = [...list].sort((a, b) => a.version - b.version);
    const earliestFrom = new Array<number>(byVersion.length);
    for (let i = byVersion.length - 1; i >= 0; i--)
      earliestFrom[i] = Math.min(byVersion[i].complete, i + 1 < byVersion.length ? earliestFrom[i + 1] : Infinity);
    out.set(url, { byTime, maxUpTo, byVersion, earliestFrom });
  }
  return out;
}

/** Index of the last element with key(element) ≤ bound, or -1. */
function lastAtMost<T>(list: T[], key: (t: T) => number, bound: number): number {
  let lo = 0;
  let hi = list.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (key(list[mid]) <= bound) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/**
 * Judges a history: every successful read against every update whose invalidate() completed
 * more than `toleranceMs` before the read was invoked.
 */
export function checkHistory(ops: Op[], { toleranceMs = 0 }: { toleranceMs?: number } = {}): Verdict {
  const reads = ops.filter((o): o is ReadOp => o.kind === 'read');
  const updates = ops.filter((o): o is UpdateOp => o.kind === 'update');
  const modules = index(updates);
  const violations: Violation[] = [];
  const windows: number[] = [];
  let constrainedReads = 0;
  for (const read of reads) {
    if (!read.ok || !read.seen) continue;
    let constrained = false;
    let worst = -1;
    for (const [url, seen] of Object.entries(read.seen)) {
      const m = modules.get(url);
      if (!m) continue;
      // The updates whose invalidate() completed strictly before the read started (less the tolerance).
      let i = lastAtMost(m.byTime, (c) => c.complete, read.invoke - toleranceMs);
      while (i >= 0 && m.byTime[i].complete + toleranceMs >= read.invoke) i--;
      if (i < 0) continue;
      constrained = true;
      const required = m.maxUpTo[i];
      if (seen >= required.version) continue;
      // The earliest completion among versions above the one seen: when this read's view first became stale.
      const j = lastAtMost(m.byVersion, (c) => c.version, seen) + 1;
      const staleForMs = read.invoke - m.earliestFrom[j];
      violations.push({ read, url, seen, required: required.version, update: required.op, staleForMs });
      worst = Math.max(worst, staleForMs);
    }
    if (constrained) constrainedReads++;
    if (worst >= 0) windows.push(worst);
  }
  return {
    operations: ops.length,
    reads: reads.length,
    updates: updates.length,
    failedReads: reads.filter((r) => !r.ok).length,
    failedUpdates: updates.filter((u) => !u.ok).length,
    constrainedReads,
    violations,
    staleReads: windows.length,
    windows,
  };
}

/** Nearest-rank percentile of `values` (NaN when empty). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export interface Staleness {
  judgedReads: number;
  staleReads: number;
  per10k: number;
  p50: number;
  p99: number;
  max: number;
}

export function staleness(verdict: Verdict): Staleness {
  const judged = verdict.reads - verdict.failedReads;
  return {
    judgedReads: judged,
    staleReads: verdict.staleReads,
    per10k: judged ? (verdict.staleReads / judged) * 10_000 : 0,
    p50: percentile(verdict.windows, 50),
    p99: percentile(verdict.windows, 99),
    max: verdict.windows.length ? Math.max(...verdict.windows) : NaN,
  };
}

export function describeViolation(v: Violation): string {
  const r = v.read;
  const u = v.update;
  return (
    `read of ${r.url} in ${r.process} [${r.invoke.toFixed(3)} → ${r.complete.toFixed(3)}] saw ${v.url} v${v.seen}, ` +
    `but invalidate() of v${v.required} had completed in ${u.process} at ${u.complete.toFixed(3)} ` +
    `(${(r.invoke - u.complete).toFixed(3)} ms before the read started; stale for ${v.staleForMs.toFixed(3)} ms)`
  );
}
