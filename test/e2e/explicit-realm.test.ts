import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidRealmURLError, ModuleOutsideRealmError, UnknownRealmError, type ModuleCacheEntry, type ModuleCacheEvent } from '../../src';
import { createCacheApp, migrate, type CacheApp } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { FakeSource } from '../support/fake-source';
import { waitFor } from '../support/wait';
import { spawnWorker, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

const REALM = 'https://example.test/realm/';
const url = (n: string) => `${REALM}${n}.ts`;
let db: TestDatabase;
/** Never registers REALM: it populates it with `{ realmURL }`. */
let stranger: WorkerHandle;
/** Registers REALM and invalidates it. */
let owner: WorkerHandle;

interface Entry {
  definitions: { value: { version: number } };
  realmURL: string;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url) SELECT $1 || 'm' || i || '.ts' FROM generate_series(0, 9) i`, [REALM]);
  // m2 imports m1: invalidating m1 reaches m2 through the stored graph.
  await db.query(`UPDATE truth SET deps = ARRAY[$1 || 'm1.ts'] WHERE url = $1 || 'm2.ts'`, [REALM]);
  [stranger, owner] = await Promise.all([
    spawnWorker('stranger', db.url, { realms: [], listener: { applicationName: 'mc-explicit-stranger' } }),
    spawnWorker('owner', db.url, { realms: [REALM], listener: { applicationName: 'mc-explicit-owner' } }),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([stranger?.stop(), owner?.stop()]);
  await db?.drop();
});

describe('explicit realm context (2 OS processes)', () => {
  it('a process that never registered the realm computes and persists for it; a peer serves its row', async () => {
    await expect(stranger.call('lookup', url('m0'))).rejects.toMatchObject({ name: UnknownRealmError.name });
    const entry = await stranger.call<Entry>('lookupIn', url('m0'), REALM);
    expect(entry.definitions.value.version).toBe(1);
    expect(entry.realmURL).toBe(REALM);
    expect(await stranger.call('inMemory', url('m0'))).toBe(true);
    const rows = await db.query<{ realm: string }>(`SELECT realm FROM module_cache_entries WHERE url = $1`, [url('m0')]);
    expect(rows).toEqual([{ realm: REALM }]);
    const fromTable = await owner.call<Entry>('lookup', url('m0'));
    expect(fromTable.definitions.value.version).toBe(1);
    expect(await owner.call('sourceCalls')).toBe(0);
  });

  it("a peer's invalidation of the realm's modules evicts them from its memory: the stale entry is not served", async () => {
    await stranger.call('lookupIn', url('m1'), REALM);
    await stranger.call('lookupIn', url('m2'), REALM);
    await stranger.call('lookupIn', url('m3'), REALM);
    expect(await stranger.call('inMemory', url('m1'))).toBe(true);
    await stranger.call('events');
    await db.query(`UPDATE truth SET version = 2 WHERE url = ANY($1)`, [[url('m1'), url('m2')]]);
    // The owner has no row of its own for m1/m2 in memory; the table has the stranger's rows and their edge.
    const invalidated = await owner.call<string[]>('invalidate', url('m1'));
    expect(invalidated).toEqual(expect.arrayContaining([url('m1'), url('m2')]));
    await waitFor(
      async () => !(await stranger.call('inMemory', url('m1'))) && !(await stranger.call('inMemory', url('m2'))),
      10_000,
      'the stranger to evict m1 and m2',
    );
    expect(await stranger.call('inMemory', url('m3'))).toBe(true);
    const events = await stranger.call<ModuleCacheEvent[]>('events');
    const remote = events.filter((e) => e.type === 'remote-invalidated');
    expect(remote.flatMap((e) => (e.type === 'remote-invalidated' ? e.urls : []))).toEqual(expect.arrayContaining([url('m1'), url('m2')]));
    expect((await stranger.call<Entry>('lookupIn', url('m1'), REALM)).definitions.value.version).toBe(2);
    expect((await stranger.call<Entry>('lookupIn', url('m2'), REALM)).definitions.value.version).toBe(2);
  });

  it("a peer's clearRealm reaches it too", async () => {
    await stranger.call('lookupIn', url('m4'), REALM);
    expect(await stranger.call('inMemory', url('m4'))).toBe(true);
    await owner.call('clearRealm', REALM);
    await waitFor(async () => !(await stranger.call('inMemory', url('m4'))), 10_000, 'the stranger to drop the realm');
    expect(await stranger.call('lookupCachedIn', url('m4'), REALM)).toBeNull();
  });

  it('the URL must lie inside realmURL, and realmURL must be a realm URL', async () => {
    await expect(stranger.call('lookupIn', 'https://example.test/elsewhere/x.ts', REALM)).rejects.toMatchObject({
      name: ModuleOutsideRealmError.name,
    });
    await expect(stranger.call('lookupIn', url('m5'), 'https://example.test/realm')).rejects.toMatchObject({
      name: InvalidRealmURLError.name,
    });
    await expect(stranger.call('lookupIn', url('m5'), 'ftp://example.test/realm/')).rejects.toMatchObject({
      name: InvalidRealmURLError.name,
    });
    expect(await stranger.call('sourceCalls')).toBeGreaterThan(0);
    const rows = await db.query(`SELECT 1 FROM module_cache_entries WHERE url = $1`, [url('m5')]);
    expect(rows).toHaveLength(0);
  });
});

describe('explicit realm context (in process)', () => {
  let app: CacheApp | undefined;
  afterAll(async () => {
    await app?.close();
  });

  it('lookupMany, lookupCached and lookupDefinition take it too; a registered realm nested inside it owns its modules', async () => {
    const NESTED = `${REALM}nested/`;
    const source = new FakeSource().define(`${REALM}in-process.ts`).define(`${NESTED}inner.ts`);
    app = await createCacheApp(db.url, { source, realms: [NESTED], listener: false });
    const { lookup } = app;
    const inner = (await lookup.lookup(`${NESTED}inner.ts`, { realmURL: REALM })) as ModuleCacheEntry;
    expect(inner.realmURL).toBe(NESTED);
    expect(await lookup.lookupDefinition(`${REALM}in-process.ts`, 'value', { realmURL: 'HTTPS://Example.test/realm/' })).toEqual({
      version: 1,
      url: `${REALM}in-process.ts`,
    });
    const many = await lookup.lookupMany([`${REALM}in-process.ts`, `${REALM}absent.ts`], { realmURL: REALM });
    expect(many.get(`${REALM}in-process.ts`)?.realmURL).toBe(REALM);
    expect(many.get(`${REALM}absent.ts`)).toBeUndefined();
    expect((await lookup.lookupCached(`${REALM}in-process.ts`, { realmURL: REALM }))?.realmURL).toBe(REALM);
    await expect(lookup.lookupCached(`${REALM}in-process.ts`)).rejects.toBeInstanceOf(UnknownRealmError);
    const outside = await lookup.lookupMany(['https://example.test/other/x.ts'], { realmURL: REALM }).catch((e: unknown) => e);
    expect(outside).toBeInstanceOf(ModuleOutsideRealmError);
    expect((outside as ModuleOutsideRealmError).code).toBe('E_OUTSIDE_REALM');
  });
});
