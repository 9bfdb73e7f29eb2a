import { describe, expect, it } from 'vitest';
import { ofType, record } from '../support/events';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

/**
 * What the table keeps and what is removed from it: the fence log pruned past fenceRetentionMs
 * (a computation it no longer covers is discarded), and the rows clearRealm and clearAll delete.
 */
const REALM = 'https://example.test/opts/';
const NESTED = `${REALM}nested/`;
const OTHER = 'https://example.test/other/';
const bed = useCacheTestBed({ realms: [REALM, NESTED, OTHER], listener: false });

const rowCount = async (where = 'true', params: unknown[] = []) =>
  Number((await bed.db.query<{ n: string }>(`SELECT count(*) AS n FROM module_cache_entries WHERE ${where}`, params))[0].n);

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
