import { describe, expect, it } from 'vitest';
import { CoalesceTimeoutError } from '../../src';
import { claimHeld } from '../support/claims';
import { ofType, record } from '../support/events';
import { FakeSource } from '../support/fake-source';
import { listening } from '../support/listeners';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

const REALM = 'https://example.test/opts/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });

describe('memory: false', () => {
  it('serves every lookup after the first from the table, none from memory', async () => {
    const source = new FakeSource().define(`${REALM}no-memory.ts`);
    const { lookup } = await bed.start({ source, memory: false });
    const events = record(lookup);
    for (let i = 0; i < 5; i++) expect((await lookup.lookup(`${REALM}no-memory.ts`))?.url).toBe(`${REALM}no-memory.ts`);
    expect(await lookup.lookupCached(`${REALM}no-memory.ts`)).toBeDefined();
    const stats = lookup.stats();
    expect(stats.computes).toBe(1);
    expect(stats.hits).toEqual({ memory: 0, table: 5 });
    expect(stats.memoryEntries).toBe(0);
    expect(ofType(events, 'hit').map((e) => e.tier)).toEqual(['table', 'table', 'table', 'table', 'table']);
  });
});

describe('CoalesceTimeoutError', () => {
  it('a lookup waiting on a peer that holds the claim past coalesceWaitTimeoutMs fails with E_COALESCE_TIMEOUT', async () => {
    const holdingSource = new FakeSource().define(`${REALM}held.ts`);
    const waitingSource = new FakeSource().define(`${REALM}held.ts`);
    const holding = await bed.start({ source: holdingSource, listener: listening('holding') });
    const impatient = await bed.start({
      source: waitingSource,
      listener: listening('impatient'),
      coalesceWaitTimeoutMs: 300,
      coalesceTakeoverCheckMs: 50,
    });
    holdingSource.hold();
    const first = holding.lookup.lookup(`${REALM}held.ts`);
    try {
      await waitFor(() => holdingSource.waiting === 1, 10_000, 'the computation to start');
      await waitFor(() => claimHeld(bed.db), 10_000, 'the claim');
      // The claim is held until the gate opens: every re-try fails, whatever the timing.
      const error = await impatient.lookup.lookup(`${REALM}held.ts`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CoalesceTimeoutError);
      expect((error as CoalesceTimeoutError).code).toBe('E_COALESCE_TIMEOUT');
      expect((error as Error).message).toMatch(/held\.ts: another process has been computing it for over 300 ms \(coalesceWaitTimeoutMs\)/);
      expect(waitingSource.calls).toEqual([]);
    } finally {
      holdingSource.release();
    }
    expect((await first)?.url).toBe(`${REALM}held.ts`);
  });
});
