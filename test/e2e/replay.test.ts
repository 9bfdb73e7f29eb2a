import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from 'pg';
import { CachingDefinitionLookup, ModuleCacheInvalidationListener, encodeInvalidations, type ModuleCacheEvent } from '../../src';
import { FENCE_LOCK } from '../../src/persistence/sql';
import type { CacheApp } from '../support/app';
import { record, ofType } from '../support/events';
import { FakeSource } from '../support/fake-source';
import { startTcpProxy, type TcpProxy } from '../support/faults/tcp-proxy';
import { uniqueName } from '../support/listeners';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

/**
 * Issue 23: a reconnect replays the fence log from the last sequence the process applied and
 * evicts only what those rows touched; a full resync is the counted fallback. The reader's
 * dedicated connection goes through a TCP proxy (cut and held off at will); its pool and the
 * writer go to the server directly. Interleavings are held with the fence lock, never sleeps.
 */
const REALM = 'https://example.test/replay/';
const url = (name: string) => `${REALM}${name}.ts`;
const FILLERS = Array.from({ length: 20 }, (_, i) => `f${i}`);
const bed = useCacheTestBed({ realms: [REALM] });

let proxy: TcpProxy;
beforeAll(async () => {
  proxy = await startTcpProxy(bed.db.url);
});
afterAll(async () => {
  await proxy?.close();
});

interface Reader {
  app: CacheApp;
  listener: ModuleCacheInvalidationListener;
  events: ModuleCacheEvent[];
  applicationName: string;
  inMemory(name: string): boolean;
  memorySize(): number;
}

/** A graph: c1 imports y, c2 imports z; x, w and the fillers stand alone. */
function source(): FakeSource {
  const s = new FakeSource();
  for (const name of ['x', 'y', 'z', 'w', ...FILLERS]) s.define(url(name));
  s.define(url('c1'), [url('y')]).define(url('c2'), [url('z')]);
  return s;
}
const ALL = ['x', 'y', 'z', 'w', 'c1', 'c2', ...FILLERS];

async function startReader(src: FakeSource, extra: { listenDirectly?: boolean; timeoutMs?: number } = {}): Promise<Reader> {
  const applicationName = uniqueName('replay-reader');
  const app = await bed.start({
    source: src,
    listener: {
      applicationName,
      ...(extra.listenDirectly ? {} : { connection: { connectionString: proxy.url } }),
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
      // Heartbeats only when a test asks (selfProbe); a replay may wait as long as a test holds the fence lock.
      heartbeat: { intervalMs: 600_000, timeoutMs: extra.timeoutMs ?? 20_000 },
    },
  });
  const events = record(app.lookup);
  const local = (app.lookup as unknown as { local: { memory: { get(u: string, s: string, t: number): unknown; size: number } } }).local;
  return {
    app,
    listener: app.app.get(ModuleCacheInvalidationListener),
    events,
    applicationName,
    inMemory: (name) => local.memory.get(url(name), 'public', Number.MAX_SAFE_INTEGER) !== undefined,
    memorySize: () => local.memory.size,
  };
}

async function committedSeq(): Promise<string> {
  const [{ seq }] = await bed.db.query<{ seq: string }>('SELECT committed_seq::text AS seq FROM module_cache_fence');
  return seq;
}

const version = async (lookup: CachingDefinitionLookup, name: string) =>
  ((await lookup.lookup(url(name)))?.definitions as { value: { version: number } }).value.version;

/** Waits until `n` backends wait for the fence lock (an advisory lock). */
const fenceWaiters = (n: number) =>
  waitFor(
    async () => {
      const [{ waiting }] = await bed.db.query<{ waiting: number }>(
        `SELECT count(*)::int AS waiting FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2`,
        [FENCE_LOCK.classId, FENCE_LOCK.objectId],
      );
      return waiting === n;
    },
    10_000,
    `${n} backend(s) waiting for the fence lock`,
  );

const remote = (events: ModuleCacheEvent[], name: string) =>
  ofType(events, 'remote-invalidated').filter((e) => e.urls.includes(url(name))).length;

describe('reconnect: targeted replay of the fence log', () => {
  it('invalidations before the cut, during the gap and during the replay: exactly the touched entries evicted, each applied once, nothing stale', async () => {
    const src = source();
    const writer = await bed.start({ source: src, listener: { applicationName: uniqueName('replay-writer') } });
    const reader = await startReader(src);
    for (const name of ALL) await reader.app.lookup.lookup(url(name));
    expect(reader.memorySize()).toBe(ALL.length);
    // The first connect had no sequence: the one full resync, counted.
    expect(reader.app.lookup.stats().resyncs).toEqual({ targeted: 0, full: 1 });

    // Before the cut: heard live, re-warmed, and a heartbeat proves it applied.
    src.version = 2;
    await writer.lookup.invalidate(url('x'));
    await waitFor(() => !reader.inMemory('x'), 10_000, 'x evicted by its notification');
    expect(await version(reader.app.lookup, 'x')).toBe(2);
    expect(await reader.listener.selfProbe()).toBe(true);
    const beforeCut = await committedSeq();
    expect(reader.listener.stats().appliedSeq).toBe(beforeCut);

    // The cut: the reader's connection is destroyed and held off.
    proxy.refuse();
    proxy.cut();
    await waitFor(() => reader.listener.state === 'reconnecting', 10_000, 'the reader reconnecting');

    // During the gap: lost as a notification.
    src.version = 3;
    await writer.lookup.invalidate(url('y'));

    // During the replay: the test holds the fence lock with an invalidation of z (a peer's,
    // NOTIFYed on commit) while the reader reconnects; its replay waits for the lock, and so
    // does the writer's invalidation of w, queued behind the replay.
    const peer = new Client({ connectionString: bed.db.url, application_name: 'mc-replay-peer' });
    await peer.connect();
    try {
      await peer.query('BEGIN');
      await peer.query(`SELECT * FROM module_cache_invalidate_modules(ARRAY[$1], 900000)`, [`${REALM}z`]);
      for (const payload of encodeInvalidations({ kind: 'module', realm: REALM, urls: [url('z'), url('c2')] }, { origin: 'a-peer' }))
        await peer.query('SELECT pg_notify($1, $2)', ['module_cache_invalidated', payload]);
      proxy.accept();
      await fenceWaiters(1);
      expect(reader.listener.isTrusted()).toBe(false);
      const invalidatingW = writer.lookup.invalidate(url('w'));
      await fenceWaiters(2);
      await peer.query('COMMIT');
      await invalidatingW;
    } finally {
      await peer.end();
    }
    await waitFor(() => ofType(reader.events, 'resync').length === 1, 20_000, 'the replay');
    await waitFor(() => !reader.inMemory('w'), 10_000, "w evicted by its notification (after the replay's marker)");

    // One targeted replay, of the gap's and the held invalidation's rows (y, z; not x: applied before
    // the cut). w's invalidation races the replay for the fence's sequence lock once the held one
    // commits: either the replay reads its row too (and its notification, before the marker, is
    // covered), or it commits after the marker and is applied from its notification. Once, either way.
    const resyncs = ofType(reader.events, 'resync');
    const wReplayed = resyncs[0]?.mode === 'targeted' && resyncs[0].rows === 3;
    expect(resyncs).toEqual([
      { type: 'resync', mode: 'targeted', from: beforeCut, to: expect.any(String), rows: wReplayed ? 3 : 2, evicted: wReplayed ? 5 : 4 },
    ]);
    expect(reader.app.lookup.stats().resyncs).toEqual({ targeted: 1, full: 1 });
    // Exactly the touched entries left memory: y and its consumer c1, z and its consumer c2, and w by its own notification.
    for (const name of ['y', 'c1', 'z', 'c2', 'w']) expect(reader.inMemory(name), name).toBe(false);
    for (const name of ['x', ...FILLERS]) expect(reader.inMemory(name), name).toBe(true);
    expect(reader.memorySize()).toBe(ALL.length - 5);
    // z's notification arrived before the replay's marker: applied through the replay's row, once.
    expect(reader.listener.stats().covered).toBe(wReplayed ? 2 : 1);
    expect(remote(reader.events, 'z')).toBe(0);
    expect(remote(reader.events, 'w')).toBe(wReplayed ? 0 : 1);
    expect(remote(reader.events, 'y')).toBe(0);

    // Nothing stale once memory is trusted again.
    await waitFor(() => reader.listener.isTrusted(), 20_000, 'the reader trusting memory again');
    const replayedTo = ofType(reader.events, 'resync')[0].to;
    expect(BigInt(reader.listener.stats().appliedSeq ?? 0) >= BigInt(replayedTo ?? Infinity)).toBe(true);
    for (const name of ['y', 'c1', 'z', 'c2', 'w']) expect(await version(reader.app.lookup, name), name).toBe(3);
    expect(await version(reader.app.lookup, 'x')).toBe(2);
    // A heartbeat after w's notification moves the applied sequence to the committed one.
    expect(await reader.listener.selfProbe()).toBe(true);
    expect(reader.listener.stats().appliedSeq).toBe(await committedSeq());
  });

  it('its backend terminated after the log was pruned past its last sequence: a full resync, counted and logged as such', async () => {
    const src = source();
    const writer = await bed.start({ source: src, listener: { applicationName: uniqueName('replay-writer') } });
    const reader = await startReader(src, { listenDirectly: true });
    for (const name of ALL) await reader.app.lookup.lookup(url(name));
    const applied = reader.listener.stats().appliedSeq;
    expect(applied).toBeDefined();
    await writer.lookup.invalidate(url('x'));
    await waitFor(() => !reader.inMemory('x'), 10_000, 'x evicted by its notification');
    // What pruning does (module_cache_log_invalidation): rows gone, pruned_seq moved past the reader's sequence.
    await bed.db.query('DELETE FROM module_cache_fence_log');
    await bed.db.query('UPDATE module_cache_fence SET pruned_seq = committed_seq');
    const killed = await bed.db.query('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1', [
      reader.applicationName,
    ]);
    expect(killed).toEqual([{ ok: true }]);
    await waitFor(() => ofType(reader.events, 'resync').length === 1, 20_000, 'the resync');
    expect(ofType(reader.events, 'resync')).toEqual([
      { type: 'resync', mode: 'full', reason: 'pruned', to: await committedSeq(), evicted: ALL.length - 1 },
    ]);
    expect(reader.memorySize()).toBe(0);
    expect(reader.app.lookup.stats().resyncs).toEqual({ targeted: 0, full: 2 });
  });

  it('a replay that cannot get the fence lock in time falls back to a full resync and keeps its last sequence', async () => {
    const reader = await startReader(source(), { listenDirectly: true, timeoutMs: 1_000 });
    for (const name of ALL) await reader.app.lookup.lookup(url(name));
    const applied = reader.listener.stats().appliedSeq;
    const holder = new Client({ connectionString: bed.db.url, application_name: 'mc-replay-holder' });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1, $2)', [FENCE_LOCK.classId, FENCE_LOCK.objectId]);
      await bed.db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [reader.applicationName]);
      await waitFor(() => ofType(reader.events, 'resync').length === 1, 20_000, 'the resync');
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(ofType(reader.events, 'resync')).toEqual([{ type: 'resync', mode: 'full', reason: 'replay-failed', evicted: ALL.length }]);
    expect(reader.memorySize()).toBe(0);
    // Still true after clearing everything: the next reconnect replays from there.
    expect(reader.listener.stats().appliedSeq).toBe(applied);
  });

  it('a reconnect with nothing invalidated meanwhile evicts nothing', async () => {
    const reader = await startReader(source(), { listenDirectly: true });
    for (const name of ALL) await reader.app.lookup.lookup(url(name));
    await bed.db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [reader.applicationName]);
    await waitFor(() => ofType(reader.events, 'resync').length === 1, 20_000, 'the resync');
    expect(ofType(reader.events, 'resync')[0]).toMatchObject({ mode: 'targeted', rows: 0, evicted: 0 });
    expect(reader.memorySize()).toBe(ALL.length);
    await waitFor(() => reader.listener.isTrusted(), 20_000, 'memory trusted again');
    const hits = reader.app.lookup.stats().hits.memory;
    for (const name of ALL) await reader.app.lookup.lookup(url(name));
    expect(reader.app.lookup.stats().hits.memory - hits).toBe(ALL.length);
  });
});
