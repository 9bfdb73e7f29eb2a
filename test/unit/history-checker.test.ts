import { describe, expect, it } from 'vitest';
import { checkHistory, staleness, type Op, type ReadOp, type UpdateOp } from '../support/history';

const A = 'https://example.test/r/a.ts';
const B = 'https://example.test/r/b.ts';

const read = (process: string, url: string, seen: Record<string, number>, invoke: number, complete = invoke + 1): ReadOp => ({
  kind: 'read',
  process,
  url,
  seen,
  invoke,
  complete,
  ok: true,
});
const update = (process: string, url: string, version: number, invoke: number, complete: number, ok = true): UpdateOp => ({
  kind: 'update',
  process,
  url,
  version,
  invoke,
  complete,
  ok,
});

describe('the history checker', () => {
  // A legal history around one stale read: reads overlapping the update may see either version,
  // reads after it see the new one, in every process, also through an import.
  const history = (): Op[] => [
    read('w0', A, { [A]: 1 }, 0),
    update('w1', A, 2, 10, 20),
    read('w0', A, { [A]: 1 }, 15, 25), // overlaps the update: either version is fine
    read('w2', A, { [A]: 2 }, 16, 18), // overlaps too, already new
    read('w0', A, { [A]: 2 }, 21),
    read('w2', B, { [B]: 1, [A]: 2 }, 22),
    read('w1', A, { [A]: 2 }, 30),
    update('w2', A, 3, 40, 50, false), // its invalidate() failed: it constrains nothing
    read('w0', A, { [A]: 2 }, 55),
  ];

  it('passes a history where every read after a completed invalidate() sees its version', () => {
    const verdict = checkHistory(history());
    expect(verdict).toMatchObject({ operations: 9, reads: 7, updates: 2, failedUpdates: 1, constrainedReads: 4, staleReads: 0 });
    expect(verdict.violations).toEqual([]);
  });

  it('reports exactly the one stale read, with the update it missed and how long after it started', () => {
    const stale = read('w2', A, { [A]: 1 }, 27);
    const verdict = checkHistory([...history(), stale]);
    expect(verdict.violations).toHaveLength(1);
    expect(verdict.violations[0]).toMatchObject({
      read: stale,
      url: A,
      seen: 1,
      required: 2,
      update: { process: 'w1', version: 2 },
      staleForMs: 7,
    });
    expect(staleness(verdict)).toMatchObject({ judgedReads: 8, staleReads: 1, per10k: 1250, p50: 7, max: 7 });
  });

  it('sees a stale import: the dependent was served with the old version of what it imports', () => {
    const stale = read('w0', B, { [B]: 1, [A]: 1 }, 35);
    const { violations } = checkHistory([...history(), stale]);
    expect(violations.map((v) => [v.read, v.url, v.seen, v.required])).toEqual([[stale, A, 1, 2]]);
  });

  it('measures the window from the earliest update the read missed, and requires the latest one completed', () => {
    const stale = read('w0', A, { [A]: 2 }, 100);
    const { violations } = checkHistory([...history(), update('w1', A, 4, 60, 70), update('w2', A, 5, 65, 80), stale]);
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({ seen: 2, required: 5, staleForMs: 30 });
  });

  it('does not count a read that started within the clock tolerance of the completion', () => {
    const close = read('w2', A, { [A]: 1 }, 20.5);
    expect(checkHistory([...history(), close], { toleranceMs: 1 }).violations).toEqual([]);
    expect(checkHistory([...history(), close], { toleranceMs: 0 }).violations).toHaveLength(1);
  });
});
