import { describe, expect, it } from 'vitest';
import { claimHeld, databaseClock, waitForClaimAttempts } from '../support/claims';
import { duration, ofType, record } from '../support/events';
import { FakeSource } from '../support/fake-source';
import { listening } from '../support/listeners';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor, within } from '../support/wait';

/** Options that rename what apps agree on: the executable extensions, the invalidation channel and the computed channel. */
const REALM = 'https://example.test/opts/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });

/** A raw message on an invalidation channel, as any peer (or a test) can send it. */
const notify = (channel: string, message: object) => bed.db.query('SELECT pg_notify($1, $2)', [channel, JSON.stringify(message)]);

describe('custom extensions, channel and computedChannel', () => {
  it("extensions ['.js']: candidates, aliases, dependencies and invalidated variants use only them", async () => {
    const source = new FakeSource()
      .set(`${REALM}x.js`, { definitions: { x: 1 }, deps: ['./dep.js', './other.ts'] })
      .set(`${REALM}dep.js`, { definitions: {}, deps: [] })
      .set(`${REALM}other.ts`, { definitions: {}, deps: [] });
    const { lookup } = await bed.start({ source, extensions: ['.js'] });
    const x = await lookup.lookup(`${REALM}x`);
    expect(x?.url).toBe(`${REALM}x.js`);
    // `.js` is trimmed from aliases; `.ts` is not an executable extension here, so it stays.
    expect(x?.deps).toEqual([`${REALM}dep`, `${REALM}other.ts`]);
    expect(source.calls.slice(0, 1)).toEqual([`${REALM}x.js`]);
    expect(await bed.db.query('SELECT alias FROM module_cache_entries WHERE url = $1', [`${REALM}x.js`])).toEqual([{ alias: `${REALM}x` }]);

    // An extensionless URL tries `.js`, then itself; `y.ts` is never a candidate.
    source.calls.length = 0;
    source.define(`${REALM}y.ts`);
    expect(await lookup.lookup(`${REALM}y`)).toBeUndefined();
    expect(source.calls).toEqual([`${REALM}y.js`, `${REALM}y`]);
    // And `z.ts` is extensionless under these rules.
    source.calls.length = 0;
    await lookup.lookup(`${REALM}z.ts`);
    expect(source.calls).toEqual([`${REALM}z.ts.js`, `${REALM}z.ts`]);

    expect((await lookup.invalidate(`${REALM}dep.js`)).sort()).toEqual([`${REALM}dep`, `${REALM}dep.js`, `${REALM}x.js`]);
  });

  it('a custom channel reaches the apps on that channel and no app on the default one', async () => {
    const channels = { channel: 'mc_opts_invalidated', computedChannel: 'mc_opts_computed' };
    const sender = await bed.start({ source: new FakeSource(), listener: listening('sender'), ...channels });
    const peer = await bed.start({ source: new FakeSource(), listener: listening('peer'), ...channels });
    const stranger = await bed.start({ source: new FakeSource(), listener: listening('stranger') });
    const peerEvents = record(peer.lookup);
    const strangerEvents = record(stranger.lookup);

    await sender.lookup.invalidate(`${REALM}custom.ts`);
    await waitFor(() => ofType(peerEvents, 'remote-invalidated').length === 1, 10_000, 'the peer to hear the invalidation');
    expect(ofType(peerEvents, 'remote-invalidated')[0]).toMatchObject({
      kind: 'module',
      realm: REALM,
      urls: expect.arrayContaining([`${REALM}custom.ts`]),
      origin: sender.lookup.origin,
    });

    // NOTIFYs reach each listener in commit order: once a marker sent after the invalidation
    // arrives on the default channel, the invalidation would have arrived before it.
    await notify('module_cache_invalidated', { k: 'module', r: REALM, m: [`${REALM}marker.ts`], o: 'marker' });
    await waitFor(() => ofType(strangerEvents, 'remote-invalidated').length === 1, 10_000, 'the marker on the default channel');
    expect(ofType(strangerEvents, 'remote-invalidated').map((e) => e.origin)).toEqual(['marker']);
    expect(stranger.lookup.stats().notifications.received).toBe(1);
  });

  it('a custom computedChannel carries the wake-up of a coalesced wait', async () => {
    const options = { channel: 'mc_opts_invalidated', computedChannel: 'mc_opts_computed', coalesceTakeoverCheckMs: 60_000 };
    const computingSource = new FakeSource().define(`${REALM}woken.ts`);
    const waitingSource = new FakeSource().define(`${REALM}woken.ts`);
    const computing = await bed.start({ source: computingSource, listener: listening('computing'), ...options });
    const waitingListener = listening('waiting');
    const waiting = await bed.start({ source: waitingSource, listener: waitingListener, ...options });
    const events = record(waiting.lookup);

    computingSource.hold();
    const first = computing.lookup.lookup(`${REALM}woken.ts`);
    await waitFor(() => computingSource.waiting === 1, 10_000, 'the computation to start');
    await waitFor(() => claimHeld(bed.db), 10_000, 'the claim');
    const since = await databaseClock(bed.db);
    const second = waiting.lookup.lookup(`${REALM}woken.ts`);
    // Its claim attempt failed: it waits for a wake-up (a re-try would come only after 60 s).
    await waitForClaimAttempts(bed.db, [waitingListener.applicationName], since, 'the second app to wait');
    computingSource.release();
    const [a, b] = await within(Promise.all([first, second]), 20_000, 'both lookups (was the waiter woken?)');
    expect(b?.createdAt).toEqual(a?.createdAt);
    expect(waitingSource.calls).toEqual([]);
    expect(ofType(events, 'coalesced')).toEqual([
      { type: 'coalesced', url: `${REALM}woken.ts`, realm: REALM, scope: 'public', woken: true, durationMs: duration },
    ]);
  });
});
