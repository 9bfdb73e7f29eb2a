import { Client, type Notification } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleCacheEvent } from '../../src';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';
import { spawnCluster, spawnWorkers, TRUTH_SQL, type ClusterHandle, type WorkerHandle } from '../processes/harness';

/**
 * A database shared with the reference's servers, seen from separate processes. Their newest
 * payloads name a realm mounted under a prefix by its prefix identifier (`"r":"@cardstack/base/"`),
 * sent here raw with pg_notify in exactly their shapes. And in `wireFormat: 'seed'` nothing but
 * invalidations goes on the channel they LISTEN on, judged by their listener's own acceptance rule.
 */
// Its database only: the app under test is a worker process.
const bed = useCacheTestBed({ realms: [], listener: false });

const BASE = 'https://example.test/base/';
const PREFIX = '@cardstack/base/';
const notify = (payload: unknown) => bed.db.query(`SELECT pg_notify('module_cache_invalidated', $1)`, [JSON.stringify(payload)]);

interface ListenerState {
  stats: { received: number; rejected: number; lastRejectReason?: string };
}

describe('across processes: prefix-form realms on the wire', () => {
  let worker: WorkerHandle;

  beforeAll(async () => {
    await bed.db.query(TRUTH_SQL);
    await bed.db.query(`INSERT INTO truth (url) SELECT $1 || n FROM unnest(ARRAY['card-api.gts', 'string.gts', 'number.gts']) n`, [BASE]);
    [worker] = await spawnWorkers(1, bed.db.url, () => ({
      realms: [BASE],
      prefixes: { [PREFIX]: BASE },
      listener: { applicationName: 'mc-prefix-wire' },
    }));
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
  });

  const inMemory = (name: string) => worker.call<boolean>('inMemory', `${BASE}${name}`);
  const remote = async () => (await worker.call<ModuleCacheEvent[]>('events')).filter((e) => e.type === 'remote-invalidated');

  it("applies the reference's module payload with a prefix realm and prefixed URLs, resolved through `prefixes`", async () => {
    for (const name of ['card-api.gts', 'string.gts', 'number.gts']) await worker.call('lookup', `${BASE}${name}`);
    await worker.call('events');
    await notify({ k: 'module', r: PREFIX, m: [`${PREFIX}card-api.gts`, `${PREFIX}string.gts`] });
    await waitFor(async () => !(await inMemory('card-api.gts')) && !(await inMemory('string.gts')), 10_000, 'both evicted');
    expect(await inMemory('number.gts')).toBe(true);
    expect(await remote()).toEqual([
      { type: 'remote-invalidated', kind: 'module', realm: BASE, urls: [`${BASE}card-api.gts`, `${BASE}string.gts`] },
    ]);
  });

  it("applies the reference's realm payload with a prefix realm", async () => {
    await worker.call('lookup', `${BASE}number.gts`);
    expect(await inMemory('number.gts')).toBe(true);
    await worker.call('events');
    await notify({ k: 'realm', r: PREFIX });
    await waitFor(async () => !(await inMemory('number.gts')), 10_000, 'the realm cleared');
    expect(await remote()).toEqual([{ type: 'remote-invalidated', kind: 'realm', realm: BASE, urls: [] }]);
  });

  it('rejects and counts an unmapped prefix, and goes on applying what follows', async () => {
    await worker.call('lookup', `${BASE}number.gts`);
    const before = (await worker.call<ListenerState>('listenerState')).stats;
    await notify({ k: 'module', r: '@cardstack/catalog/', m: ['@cardstack/catalog/listing.gts'] });
    await notify({ k: 'realm', r: '@cardstack/catalog/' });
    // Delivered in order: once this one is applied, the two before it have been handled.
    await notify({ k: 'module', r: BASE, m: [`${BASE}number.gts`] });
    await waitFor(async () => !(await inMemory('number.gts')), 10_000, 'the mapped payload after the unmapped ones');
    const after = (await worker.call<ListenerState>('listenerState')).stats;
    expect(after.rejected - before.rejected).toBe(2);
    expect(after.received - before.received).toBe(1);
    expect(after.lastRejectReason).toBe('no configured prefix maps "@cardstack/catalog/"');
    expect(await worker.call('pid')).toBe(worker.pid);
  });
});

/**
 * What the reference's realm-server listener does with a payload on `module_cache_invalidated`,
 * restated from its behaviour (its parse function and its tests): `ignored` for an empty payload,
 * `accepted` for a JSON object of kind `module` (a non-empty string `r`, a non-empty list of
 * non-empty strings `m`), `realm` (a non-empty string `r`) or `global`, and `warned` (its
 * "ignoring malformed module_cache_invalidated payload" warning) for anything else.
 */
function referenceVerdict(payload: string | undefined): 'ignored' | 'accepted' | 'warned' {
  if (!payload) return 'ignored';
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return 'warned';
  }
  if (typeof value !== 'object' || value === null) return 'warned';
  const { k, r, m } = value as Record<string, unknown>;
  const nonEmptyString = (v: unknown) => typeof v === 'string' && v.length > 0;
  if (k === 'global') return 'accepted';
  if (k === 'realm') return nonEmptyString(r) ? 'accepted' : 'warned';
  if (k === 'module') return nonEmptyString(r) && Array.isArray(m) && m.length > 0 && m.every(nonEmptyString) ? 'accepted' : 'warned';
  return 'warned';
}

describe("the reference listener's acceptance rule (its test cases, ported)", () => {
  const cases: Array<[string, string | undefined, 'ignored' | 'accepted' | 'warned']> = [
    [
      'a module payload with one URL',
      '{"k":"module","r":"http://localhost:4201/luke/","m":["http://localhost:4201/luke/cards/person.gts"]}',
      'accepted',
    ],
    [
      'a module payload with a prefix realm and many URLs',
      '{"k":"module","r":"@cardstack/base/","m":["@cardstack/base/card-api.gts","@cardstack/base/string.gts","@cardstack/base/number.gts"]}',
      'accepted',
    ],
    ['a realm payload', '{"k":"realm","r":"http://localhost:4201/luke/"}', 'accepted'],
    ['a global payload', '{"k":"global"}', 'accepted'],
    ['non-JSON', 'not-json', 'warned'],
    ['an unknown kind', '{"k":"garbage","r":"http://x/"}', 'warned'],
    ['a module payload with an empty realm', '{"k":"module","r":"","m":["http://x/foo.gts"]}', 'warned'],
    ['a module payload with an empty URL list', '{"k":"module","r":"http://x/","m":[]}', 'warned'],
    ['a module payload with a non-string URL', '{"k":"module","r":"http://x/","m":[123]}', 'warned'],
    ['a module payload without URLs', '{"k":"module","r":"http://x.test/r/"}', 'warned'],
    ['a realm payload without realm', '{"k":"realm"}', 'warned'],
    ['an empty payload', '', 'ignored'],
    ['no payload', undefined, 'ignored'],
    // What this package used to send on the shared channel in 'seed' mode.
    ['a heartbeat probe', '{"k":"probe","o":"p","n":"00ff"}', 'warned'],
    ['a sync marker', '{"k":"sync","q":"7","o":"p","t":"5b0c5e8e-7f4a-4c1e-9a59-1c7e0e3f2a10"}', 'warned'],
  ];
  it.each(cases)('%s', (_name, payload, verdict) => {
    expect(referenceVerdict(payload)).toBe(verdict);
  });
});

describe("across processes: wireFormat 'seed' keeps the shared channel to invalidations", () => {
  const LIVE = 'https://example.test/quiet/';
  const SHARED = 'module_cache_invalidated';
  const CONTROL = 'module_cache_invalidated__control';
  let workers: WorkerHandle[];
  let spy: Client;
  /** Every notification on either channel, in the order this one session received them. */
  const heard: Array<{ channel: string; payload: string }> = [];

  beforeAll(async () => {
    await bed.db.query(TRUTH_SQL);
    await bed.db.query(`INSERT INTO truth (url) SELECT $1 || 'q' || i || '.ts' FROM generate_series(0, 9) i`, [LIVE]);
    spy = new Client({ connectionString: bed.db.url });
    await spy.connect();
    spy.on('notification', (n: Notification) => heard.push({ channel: n.channel, payload: n.payload ?? '' }));
    await spy.query(`LISTEN ${SHARED}`);
    await spy.query(`LISTEN ${CONTROL}`);
    workers = await spawnWorkers(2, bed.db.url, (i) => ({
      realms: [LIVE],
      wireFormat: 'seed',
      consistency: 'strong',
      leaseMs: 10_000,
      listener: { applicationName: `mc-quiet-${i}`, heartbeat: { intervalMs: 200, timeoutMs: 3_000 } },
    }));
    await waitFor(async () => (await bed.db.query(`SELECT 1 FROM module_cache_peers`)).length === 2, 30_000, 'two members');
  }, 120_000);

  afterAll(async () => {
    await Promise.all((workers ?? []).map((w) => w.stop()));
    await spy?.end();
  });

  it("sends probes and sync markers on the control channel only, so the reference's listener rejects nothing it hears; strong mode and heartbeats work", async () => {
    const [a, b] = workers;
    for (const w of workers) await w.call('lookup', `${LIVE}q1.ts`);
    await b.call('lookup', `${LIVE}q2.ts`);
    await a.call('invalidate', `${LIVE}q1.ts`);
    await a.call('clearRealm', LIVE);
    await b.call('clearAll');
    // Several heartbeats of each process (probes go out every 200 ms).
    const probes = () => heard.filter((n) => n.payload.startsWith('{"k":"probe",'));
    await waitFor(
      () => new Set(probes().map((n) => (JSON.parse(n.payload) as { o: string }).o)).size === 2 && probes().length >= 6,
      30_000,
      'probes of both',
    );

    const shared = heard.filter((n) => n.channel === SHARED);
    const control = heard.filter((n) => n.channel === CONTROL);
    process.stdout.write(
      `[seed] shared channel: ${shared.length} payloads, ${shared.filter((n) => referenceVerdict(n.payload) !== 'accepted').length} ` +
        `the reference's listener would warn about; control channel: ${probes().length} probes, ` +
        `${control.filter((n) => n.payload.startsWith('{"k":"sync",')).length} sync markers\n`,
    );
    expect(shared.filter((n) => referenceVerdict(n.payload) !== 'accepted')).toEqual([]);
    expect(shared.map((n) => (JSON.parse(n.payload) as { k: string }).k)).toEqual(['module', 'realm', 'global']);
    expect(control.filter((n) => !/^\{"k":"(probe|sync)",/.test(n.payload))).toEqual([]);
    expect(control.filter((n) => n.payload.startsWith('{"k":"sync",'))).toHaveLength(3);

    // Strong mode: each invalidation resolved once the other process acknowledged it.
    const invalidated = [...(await a.call<ModuleCacheEvent[]>('events')), ...(await b.call<ModuleCacheEvent[]>('events'))].filter(
      (e) => e.type === 'invalidated',
    );
    expect(invalidated.map((e) => e.type === 'invalidated' && [e.kind, e.acknowledgements?.acknowledged])).toEqual([
      ['module', 1],
      ['realm', 1],
      ['global', 1],
    ]);
    // Each sync marker arrived after the invalidation it confirms, across the two channels.
    const order = heard.filter((n) => !n.payload.startsWith('{"k":"probe",')).map((n) => (JSON.parse(n.payload) as { k: string }).k);
    expect(order).toEqual(['module', 'sync', 'realm', 'sync', 'global', 'sync']);

    // Heartbeats: proven, and nothing either process heard was rejected.
    for (const w of workers) {
      const state = await w.call<{ state: string; probe: { ok: boolean }; stats: ListenerState['stats'] }>('listenerState');
      expect(state).toMatchObject({ state: 'listening', probe: { ok: true }, stats: { rejected: 0 } });
    }
  }, 60_000);
});

describe("across processes: wireFormat 'seed' through the cluster relay", () => {
  const LIVE = 'https://example.test/quiet-relay/';
  let host: ClusterHandle;
  let spy: Client;
  const heard: Array<{ channel: string; payload: string }> = [];

  beforeAll(async () => {
    await bed.db.query(TRUTH_SQL);
    await bed.db.query(`INSERT INTO truth (url) VALUES ($1)`, [`${LIVE}r.ts`]);
    spy = new Client({ connectionString: bed.db.url });
    await spy.connect();
    spy.on('notification', (n: Notification) => heard.push({ channel: n.channel, payload: n.payload ?? '' }));
    await spy.query('LISTEN module_cache_invalidated');
    host = await spawnCluster(
      2,
      bed.db.url,
      { realms: [LIVE], wireFormat: 'seed', listener: { relay: true, heartbeat: { intervalMs: 200, timeoutMs: 3_000 } } },
      'mc-quiet-relay',
    );
  }, 120_000);

  afterAll(async () => {
    await host?.stop();
    await spy?.end();
  });

  it("relays the control channel: the workers' probes arrive, and only invalidations reach the shared channel", async () => {
    const [a, b] = host.workers;
    await b.call('lookup', `${LIVE}r.ts`);
    await a.call('invalidate', `${LIVE}r.ts`);
    await waitFor(async () => !(await b.call('inMemory', `${LIVE}r.ts`)), 10_000, 'the peer worker to evict');
    for (const w of host.workers) {
      // Two probes each after the start: the heartbeat goes on proving delivery through the relay.
      const first = await w.call<{ probe: { at: string } }>('listenerState');
      await waitFor(
        async () => (await w.call<{ probe: { at: string } }>('listenerState')).probe.at !== first.probe.at,
        10_000,
        'another probe',
      );
      const state = await w.call<{ state: string; probe: { ok: boolean }; stats: ListenerState['stats'] }>('listenerState');
      expect(state).toMatchObject({ state: 'listening', probe: { ok: true }, stats: { rejected: 0 } });
    }
    expect(heard.map((n) => referenceVerdict(n.payload))).toEqual(['accepted']);
  }, 60_000);
});
