import { describe, expect, it } from 'vitest';
import type { DefinitionSourceContext, LoadedModule, ModuleCacheOptions } from '../../src';
import type { Coalescer } from '../../src/coalescing/coalescer';
import type { DedicatedConnection } from '../../src/connection/dedicated-connection';
import { MODULE_CACHE_COALESCER, MODULE_CACHE_DEDICATED_CONNECTION } from '../../src/module-cache.constants';
import type { CacheApp } from '../support/app';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

/**
 * One computation per key, through retries (SPEC Lookup 5), and claims that stay single-flight
 * although an advisory lock is re-entrant within its session: a computation discarded by an
 * invalidation joins the key's newer flight instead of computing beside it, and a second flight
 * of a key this process already claims waits for that claim like a peer would. Gates make every
 * interleaving deterministic.
 */
const REALM = 'https://example.test/flights/';
const bed = useCacheTestBed({ realms: [REALM], listener: { applicationName: 'mc-one-flight' } });

/** Counts source calls in progress, and the most at once. */
class CountingSource extends FakeSource {
  active = 0;
  maxActive = 0;

  override async load(url: string, ctx: DefinitionSourceContext): Promise<LoadedModule | null> {
    this.maxActive = Math.max(this.maxActive, ++this.active);
    try {
      return await super.load(url, ctx);
    } finally {
      this.active--;
    }
  }
}

/**
 * How many times the process's claims session holds each key (an advisory lock counts its
 * re-entries), and the most ever: 2 means two flights of one key both "won" the claim.
 */
function spyOnClaims(app: CacheApp): { maxHeld: number; attempts: number } {
  const connection = app.app.get<DedicatedConnection>(MODULE_CACHE_DEDICATED_CONNECTION);
  const held = new Map<string, number>();
  const spy = { maxHeld: 0, attempts: 0 };
  const tryLock = connection.tryLock.bind(connection);
  const unlock = connection.unlockAndNotify.bind(connection);
  connection.tryLock = async (key) => {
    spy.attempts++;
    const won = await tryLock(key);
    if (won === true) {
      held.set(key, (held.get(key) ?? 0) + 1);
      spy.maxHeld = Math.max(spy.maxHeld, held.get(key)!);
    }
    return won;
  };
  connection.unlockAndNotify = async (key, channel, payload) => {
    held.set(key, (held.get(key) ?? 1) - 1);
    return unlock(key, channel, payload);
  };
  return spy;
}

const parked = (app: CacheApp) => app.app.get<Coalescer>(MODULE_CACHE_COALESCER).parked;

async function start(source: FakeSource, options: Partial<ModuleCacheOptions> = {}): Promise<CacheApp> {
  return bed.start({ source, ...options });
}

describe('a retry after a discard joins the newer flight of its key', () => {
  it('without claims (no dedicated connection): the source runs exactly 2 times', async () => {
    const url = `${REALM}alone.ts`;
    const source = new CountingSource().define(url);
    const { lookup } = await start(source, { listener: false });
    source.hold();
    const early = lookup.lookup(url);
    await waitFor(() => source.waiting === 1, 5000, 'the first computation');
    source.version = 2;
    await lookup.invalidate(url); // the first computation is doomed; later callers start a newer one
    const late = lookup.lookup(url);
    await waitFor(() => source.waiting === 2, 5000, 'the newer computation');
    source.release();
    const entries = await Promise.all([early, late]);
    process.stdout.write(`[flights] discard + newer flight, no claims: ${source.calls.length} source call(s)\n`);
    expect(entries.map((e) => e?.definitions)).toEqual([{ value: { version: 2, url } }, { value: { version: 2, url } }]);
    // The first, discarded, and the newer one, which the retry joined: no third.
    expect(source.callsFor(url)).toBe(2);
  });

  it('with claims: the newer flight waits for the doomed one to let go of its claim, the retry joins it: 2 calls, never 2 at once', async () => {
    const url = `${REALM}claimed.ts`;
    const source = new CountingSource().define(url);
    const app = await start(source);
    const claims = spyOnClaims(app);
    source.hold();
    const early = app.lookup.lookup(url);
    await waitFor(() => source.waiting === 1, 5000, 'the first computation');
    source.version = 2;
    await app.lookup.invalidate(url);
    const late = app.lookup.lookup(url);
    // Either it parks on this process's own claim, or (re-entrant lock) it "wins" it and computes.
    await waitFor(() => parked(app) === 1 || source.calls.length === 2, 5000, 'the newer flight at the claim');
    source.release();
    const entries = await Promise.all([early, late]);
    process.stdout.write(
      `[flights] discard + newer flight, with claims: ${source.calls.length} source call(s), ` +
        `at most ${source.maxActive} at once, claim held at most ${claims.maxHeld}x\n`,
    );
    expect(entries.map((e) => e?.definitions)).toEqual([{ value: { version: 2, url } }, { value: { version: 2, url } }]);
    expect(source.callsFor(url)).toBe(2);
    expect(source.maxActive).toBe(1);
    expect(claims.maxHeld).toBe(1);
  });
});

describe('claims are single-flight even under retries (the claims session is re-entrant)', () => {
  it('a retry after a discard and its successor flight both reach the claim step: one claims, the other waits', async () => {
    const url = `${REALM}reentrant.ts`;
    const source = new CountingSource().define(url);
    const app = await start(source);
    const claims = spyOnClaims(app);
    source.hold();
    const early = app.lookup.lookup(url);
    await waitFor(() => source.waiting === 1, 5000, 'the first computation');
    source.version = 2;
    await app.lookup.invalidate(url); // the first flight is dropped: its computation is doomed
    const late = app.lookup.lookup(url);
    await waitFor(() => parked(app) === 1 || source.calls.length === 2, 5000, 'the successor flight at the claim');
    source.version = 3;
    // The successor is dropped as well: the first one's retry finds no flight to join, and both
    // flights — the retry and its successor — go to the claim step again.
    await app.lookup.invalidate(url);
    source.release();
    const entries = await Promise.all([early, late]);
    process.stdout.write(
      `[flights] retry + successor at the claim step: ${source.calls.length} source call(s), ` +
        `at most ${source.maxActive} at once, claim held at most ${claims.maxHeld}x\n`,
    );
    expect(entries.map((e) => e?.definitions)).toEqual([{ value: { version: 3, url } }, { value: { version: 3, url } }]);
    expect(claims.maxHeld).toBe(1);
    expect(source.maxActive).toBe(1);
    // The doomed first computation, and one more for both: neither computed from a stale snapshot.
    expect(source.callsFor(url)).toBe(2);
    const rows = await bed.db.query<{ v: number }>(
      `SELECT (definitions->'value'->>'version')::int AS v FROM module_cache_entries WHERE url = $1`,
      [url],
    );
    expect(rows).toEqual([{ v: 3 }]);
  });

  it("a flight that lost the claim to a peer waits for the peer's wake-up: one claim attempt, no polling", async () => {
    const url = `${REALM}peer-held.ts`;
    const holder = new CountingSource().define(url);
    const a = await start(holder, { listener: { applicationName: 'mc-one-flight-a' }, coalesceTakeoverCheckMs: 60_000 });
    const b = await start(new CountingSource().define(url), {
      listener: { applicationName: 'mc-one-flight-b' },
      coalesceTakeoverCheckMs: 60_000,
    });
    const claims = spyOnClaims(b);
    holder.hold();
    const computing = a.lookup.lookup(url);
    await waitFor(() => holder.waiting === 1, 5000, "the peer's computation");
    const waiting = b.lookup.lookup(url);
    // A waiter that woke itself would loop (read, claim, read, claim…) instead of parking.
    await waitFor(() => parked(b) === 1 || claims.attempts > 3, 5000, 'B parked on the peer’s claim');
    expect(claims.attempts).toBe(1);
    holder.release();
    const [entry, served] = await Promise.all([computing, waiting]);
    expect(served?.createdAt).toEqual(entry?.createdAt);
    expect(claims.attempts).toBe(1);
  });
});
