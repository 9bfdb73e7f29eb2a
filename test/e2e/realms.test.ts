import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidRealmURLError, UnknownRealmError } from '../../src';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';
import { spawnWorkers, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * Realms: registered and unregistered at runtime (in one app and across processes), and calls on
 * URLs outside every realm or on a prefix above the registered ones.
 */
const REALM = 'https://example.test/realms/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });
const url = (n: string) => `${REALM}${n}.ts`;

describe('realms registered at runtime', () => {
  it('registers and unregisters realms at runtime', async () => {
    const LATE = 'https://example.test/late/';
    const source = new FakeSource().define(`${LATE}x.ts`);
    const { lookup } = await bed.start({ realms: [], source });
    await expect(lookup.lookup(`${LATE}x.ts`)).rejects.toBeInstanceOf(UnknownRealmError);
    lookup.registerRealm(LATE);
    expect((await lookup.lookup(`${LATE}x.ts`))?.realmURL).toBe(LATE);
    lookup.unregisterRealm(LATE);
    expect(lookup.stats().memoryEntries).toBe(0);
    await expect(lookup.lookup(`${LATE}x.ts`)).rejects.toBeInstanceOf(UnknownRealmError);
    expect(() => lookup.registerRealm('https://example.test/no-slash')).toThrow(InvalidRealmURLError);
  });
});

describe('calls outside or above the registered realms', () => {
  it('invalidating a URL outside every realm resolves to []; clearRealm accepts any realm prefix and clears nested realms', async () => {
    const NESTED = `${REALM}nested/`;
    const source = new FakeSource().define(url('top')).define(`${NESTED}inner.ts`);
    const { lookup } = await bed.start({ realms: [REALM, NESTED], source });
    expect(await lookup.invalidate('https://elsewhere.test/x.ts')).toEqual([]);
    await lookup.lookup(url('top'));
    await lookup.lookup(`${NESTED}inner.ts`);
    expect(await lookup.clearRealm('https://unregistered.test/')).toBe(0);
    expect(await lookup.clearRealm(NESTED)).toBe(1);
    await lookup.lookup(`${NESTED}inner.ts`);
    expect(await lookup.clearRealm('https://example.test/')).toBe(2); // a prefix of both realms, itself unregistered
    await expect(lookup.clearRealm('not a url')).rejects.toBeInstanceOf(InvalidRealmURLError);
  });
});

describe('across processes: a realm registered at runtime', () => {
  const LIVE = 'https://example.test/live/';
  let workers: WorkerHandle[];

  beforeAll(async () => {
    await bed.db.query(TRUTH_SQL);
    await bed.db.query(`INSERT INTO truth (url) SELECT $1 || 'r' || i || '.ts' FROM generate_series(0, 9) i`, [LIVE]);
    workers = await spawnWorkers(2, bed.db.url, (i) => ({ realms: [], listener: { applicationName: `mc-realms-${i}` } }));
    for (const w of workers) await w.call('registerRealm', LIVE);
  }, 120_000);

  afterAll(async () => {
    await Promise.all((workers ?? []).map((w) => w.stop()));
  });

  it('a realm registered at runtime in two processes: invalidate in one, the other serves the new version', async () => {
    const [a, b] = workers;
    expect((await b.call<{ definitions: { value: { version: number } } }>('lookup', `${LIVE}r0.ts`)).definitions.value.version).toBe(1);
    await bed.db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [`${LIVE}r0.ts`]);
    await a.call('invalidate', `${LIVE}r0.ts`);
    await waitFor(
      async () => (await b.call<{ definitions: { value: { version: number } } }>('lookup', `${LIVE}r0.ts`)).definitions.value.version === 2,
      10_000,
      'B to serve the new version',
    );
  });
});
