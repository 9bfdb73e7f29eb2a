import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleCacheEvent } from '../../src';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';
import { spawnWorkers, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * A database shared with the reference's servers, seen from a separate process: their newest
 * payloads name a realm mounted under a prefix by its prefix identifier (`"r":"@cardstack/base/"`),
 * sent here raw with pg_notify in exactly their shapes.
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
