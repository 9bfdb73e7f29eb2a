import { Client } from 'pg';
import { describe, expect, it } from 'vitest';
import { DefinitionSourceError, DefinitionSourceTimeoutError, type ModuleCacheEvent, type ModuleCacheOptions } from '../../src';
import { MODULE_CACHE_ENTRIES } from '../../src/module-cache.constants';
import type { EntryStore } from '../../src/persistence/entries';
import type { CacheApp } from '../support/app';
import { useCacheTestBed } from '../support/test-bed';
import { FakeSource } from '../support/fake-source';
import { lockWaits } from '../support/backends';
import { waitFor } from '../support/wait';

const REALM = 'https://example.test/realm/';
const OTHER = 'https://example.test/other/';
const bed = useCacheTestBed({ realms: [REALM, OTHER], listener: false });

function start(source: FakeSource, options: Partial<ModuleCacheOptions> = {}): Promise<CacheApp> {
  return bed.start({ source, ...options });
}

async function storedVersion(url: string): Promise<number | undefined> {
  const rows = await bed.db.query<{ version: number }>(
    `SELECT (definitions->'value'->>'version')::int AS version FROM module_cache_entries WHERE url = $1`,
    [url],
  );
  return rows[0]?.version;
}

describe('single-flight', () => {
  it('100 concurrent callers share one computation; other keys are not coalesced', async () => {
    const source = new FakeSource().define(`${REALM}one.ts`).define(`${REALM}two.ts`);
    const { lookup } = await start(source);
    source.hold();
    const callers = Array.from({ length: 100 }, () => lookup.lookup(`${REALM}one.ts`));
    const other = lookup.lookup(`${REALM}two.ts`);
    await waitFor(() => source.waiting === 2, 5000, 'both computations to start');
    source.release();
    const results = await Promise.all(callers);
    expect(new Set(results).size).toBe(1);
    expect(source.callsFor(`${REALM}one.ts`)).toBe(1);
    expect((await other)?.url).toBe(`${REALM}two.ts`);
    expect(source.callsFor(`${REALM}two.ts`)).toBe(1);
    expect(lookup.stats().inFlight).toBe(0);
  });

  it('an erroring computation fails every caller with a clear error and releases the slot', async () => {
    let fail = true;
    const source = new FakeSource().set(`${REALM}flaky.ts`, () => {
      if (fail) throw new Error('disk on fire');
      return { definitions: { ok: true }, deps: [] };
    });
    const { lookup } = await start(source);
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => lookup.lookup(`${REALM}flaky.ts`)));
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof DefinitionSourceError)).toBe(true);
    expect((results[0] as PromiseRejectedResult).reason.message).toMatch(/flaky\.ts: disk on fire/);
    expect(source.calls.length).toBe(1);
    expect(await bed.db.query(`SELECT 1 FROM module_cache_entries`)).toEqual([]);
    fail = false;
    expect((await lookup.lookup(`${REALM}flaky.ts`))?.definitions).toEqual({ ok: true });
    expect(source.calls.length).toBe(2);
  });

  it('a hanging source times out with a clear error, its signal aborted, nothing cached', async () => {
    let signal: AbortSignal | undefined;
    const source = new FakeSource().set(`${REALM}hang.ts`, (_u, ctx) => {
      signal = ctx.signal;
      return new Promise(() => {});
    });
    const { lookup } = await start(source, { sourceTimeoutMs: 200 });
    const error = await lookup.lookup(`${REALM}hang.ts`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DefinitionSourceTimeoutError);
    expect((error as Error).message).toMatch(/hang\.ts within 200 ms/);
    expect(signal?.aborted).toBe(true);
    expect(lookup.stats().inFlight).toBe(0);
    expect(await bed.db.query(`SELECT 1 FROM module_cache_entries`)).toEqual([]);
  });
});

describe('invalidation during an in-flight computation', () => {
  for (const how of ['invalidate', 'clearRealm', 'clearAll'] as const) {
    it(`${how}: no stale row is left and the caller receives the fresh result`, async () => {
      const url = `${REALM}fenced.ts`;
      const source = new FakeSource().define(url);
      const { lookup } = await start(source);
      source.hold();
      const pending = lookup.lookup(url);
      await waitFor(() => source.waiting === 1, 5000, 'computation to start');
      source.version = 2; // the module changes, then the change is announced
      if (how === 'invalidate') await lookup.invalidate(url);
      else if (how === 'clearRealm') await lookup.clearRealm(REALM);
      else await lookup.clearAll();
      source.release();
      const entry = await pending;
      expect(entry?.definitions).toEqual({ value: { version: 2, url } });
      expect(await storedVersion(url)).toBe(2);
      expect(lookup.stats().discards).toBeGreaterThanOrEqual(1);
    });
  }

  it('keeps an unrelated in-flight computation', async () => {
    const source = new FakeSource().define(`${REALM}a.ts`).define(`${REALM}b.ts`);
    const { lookup } = await start(source);
    source.hold();
    const a = lookup.lookup(`${REALM}a.ts`);
    const b = lookup.lookup(`${REALM}b.ts`);
    await waitFor(() => source.waiting === 2, 5000, 'computations to start');
    await lookup.invalidate(`${REALM}a.ts`);
    source.release();
    await Promise.all([a, b]);
    expect(source.callsFor(`${REALM}a.ts`)).toBe(2);
    expect(source.callsFor(`${REALM}b.ts`)).toBe(1);
  });

  it('later callers do not join a doomed computation', async () => {
    const url = `${REALM}doomed.ts`;
    const source = new FakeSource().define(url);
    const { lookup } = await start(source);
    source.hold();
    const early = lookup.lookup(url);
    await waitFor(() => source.waiting === 1, 5000, 'computation to start');
    source.version = 2;
    await lookup.invalidate(url);
    const late = lookup.lookup(url);
    await waitFor(() => source.waiting === 2, 5000, 'a fresh computation for the late caller');
    source.release();
    expect((await late)?.definitions).toEqual({ value: { version: 2, url } });
    expect((await early)?.definitions).toEqual({ value: { version: 2, url } });
  });

  it('the database refuses the write when the invalidation lands between the local check and the write', async () => {
    const url = `${REALM}race.ts`;
    const source = new FakeSource().define(url);
    const { app, lookup } = await start(source);
    const repository = app.get<EntryStore>(MODULE_CACHE_ENTRIES);
    const real = repository.persist.bind(repository);
    let raced = false;
    repository.persist = async (args) => {
      if (!raced) {
        raced = true; // local generations were checked already; now the module changes and is invalidated
        source.version = 2;
        await lookup.invalidate(url);
      }
      return real(args);
    };
    const entry = await lookup.lookup(url);
    expect(entry?.definitions).toEqual({ value: { version: 2, url } });
    expect(await storedVersion(url)).toBe(2);
    expect(lookup.stats().discards).toBe(1);
  });

  it('a peer invalidation this process never hears of still fences its write (database decides)', async () => {
    const url = `${REALM}peer.ts`;
    const source = new FakeSource().define(url);
    const a = await start(source);
    const b = await start(new FakeSource()); // no listener: A never learns of B's invalidation
    source.hold();
    const pending = a.lookup.lookup(url);
    await waitFor(() => source.waiting === 1, 5000, 'computation to start');
    source.version = 2;
    await b.lookup.invalidate(url);
    source.release();
    expect((await pending)?.definitions).toEqual({ value: { version: 2, url } });
    expect(await storedVersion(url)).toBe(2);
  });

  it('a persist waits for an invalidation transaction in progress, then is refused', async () => {
    const url = `${REALM}locked.ts`;
    const source = new FakeSource().define(url);
    const { lookup } = await start(source);
    source.hold();
    const pending = lookup.lookup(url);
    await waitFor(() => source.waiting === 1, 5000, 'computation to start');
    const peer = new Client({ connectionString: bed.db.url, application_name: 'peer-invalidation' });
    await peer.connect();
    try {
      await peer.query('BEGIN');
      await peer.query(`SELECT * FROM module_cache_invalidate_modules($1::text[], 60000)`, [[`${REALM}locked`]]);
      source.version = 2;
      source.release();
      await waitFor(async () => (await lockWaits(bed.db, 'advisory')) > 0, 5000, 'the persist to wait on the fence lock');
      await peer.query('COMMIT');
    } finally {
      await peer.end();
    }
    expect((await pending)?.definitions).toEqual({ value: { version: 2, url } });
    expect(await storedVersion(url)).toBe(2);
  });

  for (const how of ['invalidate', 'clearRealm', 'clearAll'] as const) {
    it(`a read that raced the ${how} transaction does not leave the old entry in memory`, async () => {
      const url = `${REALM}raced-${how}.ts`;
      const source = new FakeSource().define(url);
      const { lookup } = await start(source);
      await lookup.lookup(url);
      // Hold the invalidation mid-transaction: another session locks the row it must delete.
      const lock = new Client({ connectionString: bed.db.url, application_name: 'row-lock' });
      await lock.connect();
      try {
        await lock.query('BEGIN');
        await lock.query(`SELECT 1 FROM module_cache_entries WHERE url = $1 FOR UPDATE`, [url]);
        source.version = 2;
        const invalidating =
          how === 'invalidate' ? lookup.invalidate(url) : how === 'clearRealm' ? lookup.clearRealm(REALM) : lookup.clearAll();
        await waitFor(async () => (await lockWaits(bed.db, 'transactionid')) > 0, 5000, 'the invalidation to wait on the row lock');
        // Local state was cleared before the transaction; this read still sees the old row (uncommitted delete).
        expect((await lookup.lookup(url))?.definitions).toEqual({ value: { version: 1, url } });
        await lock.query('COMMIT');
        await invalidating;
      } finally {
        await lock.end();
      }
      expect((await lookup.lookup(url))?.definitions).toEqual({ value: { version: 2, url } });
    });
  }

  it('when every attempt is invalidated, the waiting caller gets the last result, neither stored nor kept in memory', async () => {
    const url = `${REALM}churn.ts`;
    const source = new FakeSource();
    const { lookup } = await start(source, { maxRetries: 2 });
    const events: ModuleCacheEvent[] = [];
    lookup.events$.subscribe((e) => events.push(e));
    let version = 0;
    source.set(url, async () => {
      const seen = ++version;
      await lookup.invalidate(url); // invalidated during every computation
      return { definitions: { version: seen }, deps: [] };
    });
    expect((await lookup.lookup(url))?.definitions).toEqual({ version: 3 });
    expect(lookup.stats()).toMatchObject({ retries: 2, discards: 3, servedUnpersisted: 1, persisted: 0, memoryEntries: 0 });
    expect(events.filter((e) => e.type === 'served-unpersisted')).toEqual([
      { type: 'served-unpersisted', reason: 'invalidated-locally', attempts: 3, url, realm: REALM, scope: 'public' },
    ]);
    expect(await bed.db.query(`SELECT 1 FROM module_cache_entries WHERE url = $1`, [url])).toEqual([]);
  });
});
