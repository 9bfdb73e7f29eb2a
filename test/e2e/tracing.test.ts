import { subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRACING_CHANNELS, type LoadedModule } from '../../src';
import { traced } from '../../src/events/tracing';
import { createCacheApp, migrate, type CacheApp } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { waitFor } from '../support/wait';
import { spawnWorkers, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * The tracing channels an APM subscribes to: every lookup past the hot path, computation,
 * persist (with the fence's outcome), invalidation, and claim wait — here a wait on a claim
 * another OS process holds, so the trace shows where the slow lookup waited.
 */
const REALM = 'https://example.test/traced/';
const url = (n: string) => `${REALM}${n}.ts`;

interface Traced {
  channel: string;
  phase: 'start' | 'asyncEnd' | 'error';
  context: Record<string, unknown>;
  at: number;
}

let db: TestDatabase;
let peer: WorkerHandle;
let cache: CacheApp;
const seen: Traced[] = [];
const handlers = Object.values(TRACING_CHANNELS).map((channel) => {
  const record = (phase: Traced['phase']) => (context: object) =>
    seen.push({ channel, phase, context: { ...(context as Record<string, unknown>) }, at: performance.now() });
  return { channel, handlers: { start: record('start'), asyncEnd: record('asyncEnd'), error: record('error'), end() {}, asyncStart() {} } };
});

class TruthlessSource {
  async load(u: string): Promise<LoadedModule | null> {
    return { definitions: { u }, deps: [] };
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url) VALUES ($1), ($2)`, [url('slow'), url('plain')]);
  [peer] = await spawnWorkers(1, db.url, () => ({ realms: [REALM] }));
  cache = await createCacheApp(db.url, { realms: [REALM], source: new TruthlessSource() });
  for (const { channel, handlers: h } of handlers) tracingChannel(channel).subscribe(h);
}, 120_000);

afterAll(async () => {
  for (const { channel, handlers: h } of handlers) tracingChannel(channel).unsubscribe(h);
  await cache?.close();
  await peer?.stop();
  await db?.drop();
});

const of = (channel: string, phase: Traced['phase']) => seen.filter((t) => t.channel === channel && t.phase === phase);

describe('diagnostics_channel tracing', () => {
  it('publishes the channel names it documents', () => {
    expect(TRACING_CHANNELS).toEqual({
      lookup: 'module-cache:lookup',
      computation: 'module-cache:computation',
      persist: 'module-cache:persist',
      invalidation: 'module-cache:invalidation',
      claimWait: 'module-cache:claim-wait',
    });
  });

  it('traces a cold lookup: lookup, claim, computation, persist with the fence outcome', async () => {
    seen.length = 0;
    await cache.lookup.lookup(url('plain'));
    expect(of('module-cache:lookup', 'asyncEnd')).toHaveLength(1);
    expect(of('module-cache:lookup', 'asyncEnd')[0].context).toMatchObject({ url: url('plain') });
    expect(of('module-cache:claim-wait', 'asyncEnd')[0].context).toMatchObject({ url: url('plain'), result: { kind: 'claimed' } });
    expect(of('module-cache:computation', 'asyncEnd')[0].context).toMatchObject({ url: url('plain'), realm: REALM, scope: 'public' });
    expect(of('module-cache:persist', 'asyncEnd')[0].context).toMatchObject({ url: url('plain'), result: { status: 'persisted' } });
    // A memory hit takes the hot path: nothing to trace.
    seen.length = 0;
    await cache.lookup.lookup(url('plain'));
    expect(seen).toEqual([]);
  });

  it("shows a lookup's time in the wait on a claim another process holds", async () => {
    await peer.call('hold', url('slow'));
    const peerLookup = peer.call('lookup', url('slow'));
    await waitFor(async () => (await peer.call<number>('waiting', url('slow'))) === 1, 10_000, 'the peer computing');
    seen.length = 0;
    const mine = cache.lookup.lookup(url('slow'));
    await waitFor(() => of('module-cache:claim-wait', 'start').length === 1, 10_000, 'the claim wait to start');
    await new Promise((r) => setTimeout(r, 300));
    await peer.call('release', url('slow'));
    await Promise.all([mine, peerLookup]);
    const [start] = of('module-cache:claim-wait', 'start');
    const [end] = of('module-cache:claim-wait', 'asyncEnd');
    expect(end.context).toMatchObject({ url: url('slow'), result: { kind: 'row' } });
    expect(end.at - start.at).toBeGreaterThanOrEqual(300);
    // It waited instead of computing.
    expect(of('module-cache:computation', 'start')).toEqual([]);
  });

  it('traces invalidations of every kind, and errors', async () => {
    seen.length = 0;
    await cache.lookup.invalidate(url('plain'));
    await cache.lookup.invalidateMany([url('plain'), url('slow')]);
    await cache.lookup.clearRealm(REALM);
    await cache.lookup.clearAll();
    await expect(cache.lookup.invalidate('not a url')).rejects.toThrow();
    const ends = of('module-cache:invalidation', 'asyncEnd');
    expect(ends.filter((t) => !('error' in t.context)).map((t) => t.context.kind)).toEqual(['module', 'module', 'realm', 'global']);
    expect(of('module-cache:invalidation', 'error')).toHaveLength(1);
    expect(of('module-cache:invalidation', 'error')[0].context).toMatchObject({ urls: ['not a url'], error: expect.any(Error) });
  });

  it('builds no context and publishes nothing when no one subscribes', async () => {
    let built = 0;
    const name = 'module-cache:lookup';
    const spy = () => undefined;
    subscribe(`tracing:${name}:start`, spy);
    unsubscribe(`tracing:${name}:start`, spy);
    for (const { channel, handlers: h } of handlers) tracingChannel(channel).unsubscribe(h);
    try {
      expect(
        await traced(
          'lookup',
          () => (built++, {}),
          async () => 7,
        ),
      ).toBe(7);
      expect(built).toBe(0);
    } finally {
      for (const { channel, handlers: h } of handlers) tracingChannel(channel).subscribe(h);
    }
  });
});
