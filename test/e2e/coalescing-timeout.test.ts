import { describe, expect, it } from 'vitest';
import { CoalesceTimeoutError } from '../../src';
import { claimHeld } from '../support/claims';
import { FakeSource } from '../support/fake-source';
import { listening } from '../support/listeners';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

/**
 * A coalesced wait that gives up: coalesceWaitTimeoutMs. Two apps in this process share the
 * claim (coalescing.test.ts covers coalescing across OS processes).
 */
const REALM = 'https://example.test/opts/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });

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
