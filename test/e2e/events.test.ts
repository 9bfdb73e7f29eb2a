import { firstValueFrom } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { ModuleCacheInvalidationListener, type ModuleCacheEvent, type ModuleCacheOptions } from '../../src';
import { type CacheApp } from '../support/app';
import { claimHeld, databaseClock, waitForClaimAttempts } from '../support/claims';
import { duration, ofType, record } from '../support/events';
import { FakeSource } from '../support/fake-source';
import { listening } from '../support/listeners';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor, within } from '../support/wait';

/**
 * What events$ emits for lookups, invalidations, the listener and coalescing, and how an app tells
 * its own notifications (echoes) from a peer's.
 */
const REALM = 'https://example.test/opts/';
const NESTED = `${REALM}nested/`;
const OTHER = 'https://example.test/other/';
const bed = useCacheTestBed({ realms: [REALM, NESTED, OTHER], listener: false });

/** A raw message on an invalidation channel, as any peer (or a test) can send it. */
const notify = (channel: string, message: object) => bed.db.query('SELECT pg_notify($1, $2)', [channel, JSON.stringify(message)]);

const rowCount = async (where = 'true', params: unknown[] = []) =>
  Number((await bed.db.query<{ n: string }>(`SELECT count(*) AS n FROM module_cache_entries WHERE ${where}`, params))[0].n);

describe('own echoes', () => {
  it("an app's own invalidation is not counted as received and emits no remote-invalidated; a peer's is and does", async () => {
    const self = await bed.start({ source: new FakeSource(), listener: listening('self') });
    const peer = await bed.start({ source: new FakeSource(), listener: listening('peer') });
    const selfEvents = record(self.lookup);
    const peerEvents = record(peer.lookup);

    await self.lookup.invalidate(`${REALM}echo.ts`);
    await waitFor(() => ofType(peerEvents, 'remote-invalidated').length === 1, 10_000, 'the peer to hear it');
    // Sent after the invalidation committed, so it reaches `self` after the echo did.
    await notify('module_cache_invalidated', { k: 'module', r: REALM, m: [`${REALM}marker.ts`], o: 'marker' });
    await waitFor(() => ofType(selfEvents, 'remote-invalidated').length === 1, 10_000, 'the marker');

    expect(ofType(selfEvents, 'remote-invalidated').map((e) => e.origin)).toEqual(['marker']);
    expect(self.lookup.stats().notifications).toMatchObject({ sent: 1, received: 1 });
    // The echo did arrive (the listener parsed it), and the lookup ignored it by its origin.
    expect(self.app.get(ModuleCacheInvalidationListener).stats().received).toBe(2);

    await waitFor(() => ofType(peerEvents, 'remote-invalidated').length === 2, 10_000, 'the marker at the peer');
    expect(ofType(peerEvents, 'remote-invalidated').map((e) => e.origin)).toEqual([self.lookup.origin, 'marker']);
    expect(peer.lookup.stats().notifications).toMatchObject({ sent: 0, received: 2 });
  });
});

describe('events$', () => {
  async function startRecorded(
    source: FakeSource,
    options: Partial<ModuleCacheOptions> = {},
  ): Promise<CacheApp & { events: ModuleCacheEvent[] }> {
    const app = await bed.start({ source, ...options });
    return { ...app, events: record(app.lookup) };
  }

  it('miss, computed (with and without an error), persisted, hit from memory and from the table', async () => {
    const source = new FakeSource().define(`${REALM}a.ts`).set(`${REALM}bad.ts`, { definitions: {}, deps: [], error: { message: 'boom' } });
    const { lookup, events } = await startRecorded(source);
    await lookup.lookup(`${REALM}a.ts`);
    await lookup.lookup(`${REALM}a.ts`);
    await lookup.lookup(`${REALM}bad.ts`);
    const fresh = await startRecorded(new FakeSource());
    await fresh.lookup.lookup(`${REALM}a.ts`);

    const where = { url: `${REALM}a.ts`, realm: REALM, scope: 'public' };
    expect(ofType(events, 'miss')).toEqual([
      { type: 'miss', ...where, durationMs: duration },
      { type: 'miss', ...where, url: `${REALM}bad.ts`, durationMs: duration },
    ]);
    expect(ofType(events, 'computed')).toEqual([
      { type: 'computed', ...where, attempt: 1, durationMs: duration },
      { type: 'computed', ...where, url: `${REALM}bad.ts`, attempt: 1, durationMs: duration, error: 'boom' },
    ]);
    expect(ofType(events, 'persisted')).toEqual([
      { type: 'persisted', ...where, durationMs: duration },
      { type: 'persisted', ...where, url: `${REALM}bad.ts`, durationMs: duration },
    ]);
    expect(ofType(events, 'hit')).toEqual([{ type: 'hit', tier: 'memory', ...where, durationMs: duration }]);
    expect(fresh.events).toEqual([{ type: 'hit', tier: 'table', ...where, durationMs: duration }]);
    for (const event of [...events, ...fresh.events]) expect((event as { durationMs: number }).durationMs).toBeGreaterThanOrEqual(0);
  });

  it('discarded and served-unpersisted when every attempt was invalidated; invalidated for a module, a realm and everything', async () => {
    const url = `${REALM}churn.ts`;
    const source = new FakeSource().define(url);
    const { lookup, events } = await startRecorded(source, { maxRetries: 0 });
    source.hold();
    const pending = lookup.lookup(url);
    await waitFor(() => source.waiting === 1, 10_000, 'the computation to start');
    const urls = await lookup.invalidate(url);
    source.release();
    expect((await pending)?.url).toBe(url); // served, though never stored
    expect(await rowCount('url = $1', [url])).toBe(0);

    const where = { url, realm: REALM, scope: 'public' };
    expect(ofType(events, 'discarded')).toEqual([{ type: 'discarded', reason: 'invalidated-locally', attempt: 1, ...where }]);
    expect(ofType(events, 'served-unpersisted')).toEqual([
      { type: 'served-unpersisted', reason: 'invalidated-locally', attempts: 1, ...where },
    ]);
    expect(lookup.stats().servedUnpersisted).toBe(1);

    await lookup.clearRealm(OTHER);
    await lookup.clearAll();
    expect(ofType(events, 'invalidated')).toEqual([
      { type: 'invalidated', kind: 'module', realm: REALM, urls, durationMs: duration },
      { type: 'invalidated', kind: 'realm', realm: OTHER, urls: [], durationMs: duration },
      { type: 'invalidated', kind: 'global', urls: [], durationMs: duration },
    ]);
    expect(urls).toEqual(expect.arrayContaining([url, `${REALM}churn`]));
  });

  it("remote-invalidated for a peer's module, realm and global invalidation, with its origin", async () => {
    const peer = await bed.start({ source: new FakeSource(), listener: listening('remote-peer') });
    const { events } = await startRecorded(new FakeSource(), { listener: listening('remote-self') });
    const urls = await peer.lookup.invalidate(`${REALM}remote.ts`);
    await peer.lookup.clearRealm(NESTED);
    await peer.lookup.clearAll();
    await waitFor(() => ofType(events, 'remote-invalidated').length === 3, 10_000, 'three remote invalidations');
    const origin = peer.lookup.origin;
    expect(ofType(events, 'remote-invalidated')).toEqual([
      { type: 'remote-invalidated', kind: 'module', realm: REALM, urls, origin },
      { type: 'remote-invalidated', kind: 'realm', realm: NESTED, urls: [], origin },
      { type: 'remote-invalidated', kind: 'global', urls: [], origin },
    ]);
  });

  it('listener-state and resync when the listener connection is lost and comes back', async () => {
    const listener = listening('resync');
    const { events, app } = await startRecorded(new FakeSource(), { listener });
    const back = firstValueFrom(app.get(ModuleCacheInvalidationListener).resync$);
    const killed = await bed.db.query('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1', [
      listener.applicationName,
    ]);
    expect(killed).toEqual([{ ok: true }]);
    await within(back, 20_000, 'the listener to reconnect');
    await waitFor(() => ofType(events, 'resync').length === 1, 10_000, 'the resync event');
    expect(events.filter((e) => e.type === 'listener-state' || e.type === 'resync')).toEqual([
      { type: 'listener-state', state: 'reconnecting' },
      { type: 'listener-state', state: 'listening' },
      // Nothing was invalidated meanwhile: the replay of the fence log evicts nothing.
      { type: 'resync', mode: 'targeted', from: expect.any(String), to: expect.any(String), rows: 0, evicted: 0 },
    ]);
  });

  it('coalesced, with woken, when another app computed the module', async () => {
    // The full shape is checked in channels.test.ts ("a custom computedChannel carries the wake-up"); here, the default channels.
    const holdingSource = new FakeSource().define(`${REALM}shared.ts`);
    const holding = await bed.start({ source: holdingSource, listener: listening('co-holding') });
    const waitingListener = listening('co-waiting');
    const { lookup, events } = await startRecorded(new FakeSource(), { listener: waitingListener, coalesceTakeoverCheckMs: 60_000 });
    holdingSource.hold();
    const first = holding.lookup.lookup(`${REALM}shared.ts`);
    await waitFor(() => holdingSource.waiting === 1, 10_000, 'the computation to start');
    await waitFor(() => claimHeld(bed.db), 10_000, 'the claim');
    const since = await databaseClock(bed.db);
    const second = lookup.lookup(`${REALM}shared.ts`);
    await waitForClaimAttempts(bed.db, [waitingListener.applicationName], since, 'the second app to wait');
    holdingSource.release();
    await within(Promise.all([first, second]), 20_000, 'both lookups');
    expect(ofType(events, 'coalesced')).toEqual([
      { type: 'coalesced', url: `${REALM}shared.ts`, realm: REALM, scope: 'public', woken: true, durationMs: duration },
    ]);
    expect(ofType(events, 'miss')).toHaveLength(1);
    expect(ofType(events, 'computed')).toEqual([]);
  });
});
