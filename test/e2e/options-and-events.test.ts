import { describe, expect, it } from 'vitest';
import { CoalesceTimeoutError } from '../../src';
import { claimHeld } from '../support/claims';
import { ofType, record } from '../support/events';
import { FakeSource } from '../support/fake-source';
import { listening } from '../support/listeners';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

const REALM = 'https://example.test/opts/';
const NESTED = `${REALM}nested/`;
const OTHER = 'https://example.test/other/';
const bed = useCacheTestBed({ realms: [REALM, NESTED, OTHER], listener: false });

const rowCount = async (where = 'true', params: unknown[] = []) =>
  Number((await bed.db.query<{ n: string }>(`SELECT count(*) AS n FROM module_cache_entries WHERE ${where}`, params))[0].n);

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

describe('fence-log pruning', () => {
  it('a computation whose watermark the log no longer reaches is discarded as fence-expired, and the caller still gets a result', async () => {
    // fenceRetentionMs must exceed sourceTimeoutMs × (maxRetries + 1): 30 s > 10 s × 2.
    const fenceRetentionMs = 30_000;
    const source = new FakeSource().define(`${REALM}slow.ts`).define(`${REALM}y.ts`).define(`${REALM}z.ts`);
    const { lookup } = await bed.start({ source, sourceTimeoutMs: 10_000, maxRetries: 1, fenceRetentionMs });
    const events = record(lookup);
    const fence = async () =>
      (await bed.db.query<{ pruned: string }>('SELECT pruned_seq::text AS pruned FROM module_cache_fence'))[0].pruned;

    source.hold();
    const pending = lookup.lookup(`${REALM}slow.ts`);
    await waitFor(() => source.waiting === 1, 10_000, 'the computation to start');
    // Two invalidations of unrelated modules; the first one is made older than the retention
    // (and younger than the 15-minute default) instead of waiting for it to age.
    await lookup.invalidate(`${REALM}y.ts`);
    const [{ seq: first }] = await bed.db.query<{ seq: string }>('SELECT max(seq)::text AS seq FROM module_cache_fence_log');
    await bed.db.query(
      `UPDATE module_cache_fence_log SET invalidated_at = now() - ($2::bigint * 2) * interval '1 millisecond' WHERE seq = $1`,
      [first, fenceRetentionMs],
    );
    expect(await fence()).not.toBe(first);
    await lookup.invalidate(`${REALM}z.ts`); // logging it prunes what is older than the retention
    expect(await fence()).toBe(first);
    expect(await bed.db.query('SELECT 1 FROM module_cache_fence_log WHERE seq = $1', [first])).toEqual([]);

    source.release();
    const entry = await pending;
    expect(entry?.url).toBe(`${REALM}slow.ts`);
    expect(ofType(events, 'discarded')).toEqual([
      { type: 'discarded', reason: 'fence-expired', attempt: 1, url: `${REALM}slow.ts`, realm: REALM, scope: 'public' },
    ]);
    // The retry read under a watermark the log reaches, and was stored.
    expect(ofType(events, 'persisted').map((e) => e.url)).toEqual([`${REALM}slow.ts`]);
    expect(await rowCount('url = $1', [`${REALM}slow.ts`])).toBe(1);
    expect(lookup.stats()).toMatchObject({ discards: 1, retries: 1, persisted: 1 });
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

describe('clearRealm and clearAll', () => {
  it('return the exact number of rows they deleted (clearRealm: nested realms included, every scope)', async () => {
    const source = new FakeSource();
    const modules = [`${REALM}r1.ts`, `${REALM}r2.ts`, `${NESTED}n1.ts`, `${OTHER}o1.ts`, `${OTHER}o2.ts`];
    for (const m of modules) source.define(m);
    const { lookup } = await bed.start({ source });
    const seed = async () => {
      for (const m of modules) await lookup.lookup(m);
      await lookup.lookup(`${REALM}r1.ts`, { scope: 'user:1' });
    };
    await seed();
    expect(await rowCount()).toBe(6);

    expect(await lookup.clearRealm(NESTED)).toBe(1);
    expect(await lookup.clearRealm(NESTED)).toBe(0);
    await seed();
    // r1 (two scopes), r2 and the nested realm's n1.
    expect(await lookup.clearRealm(REALM)).toBe(4);
    expect(await rowCount()).toBe(2);
    expect(await lookup.clearAll()).toBe(2);
    expect(await lookup.clearAll()).toBe(0);
    await seed();
    expect(await lookup.clearAll()).toBe(6);
    expect(await rowCount()).toBe(0);
  });
});
