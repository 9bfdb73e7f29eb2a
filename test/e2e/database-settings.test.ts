import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';

const REALM = 'https://settings.test/r/';
const url = (name: string) => `${REALM}${name}.ts`;

const source = new FakeSource();
const bed = useCacheTestBed({ realms: [REALM], source, listener: { heartbeat: { intervalMs: 200, timeoutMs: 2_000 } } });

/** A database-level default for the sessions opened after it (the test's apps), reset afterwards. */
async function withDatabaseSetting(name: string, value: string, body: () => Promise<void>): Promise<void> {
  await bed.db.query(`ALTER DATABASE ${bed.db.name} SET ${name} = '${value}'`);
  try {
    await body();
  } finally {
    await bed.db.query(`ALTER DATABASE ${bed.db.name} RESET ${name}`);
  }
}

describe('unusual database settings', () => {
  // A LISTENing session sends nothing while it waits: a server-wide idle_session_timeout
  // (PostgreSQL 14+) would end it every few seconds, resyncing (emptying memory) each time.
  it('idle_session_timeout does not end the dedicated connection', async () => {
    await withDatabaseSetting('idle_session_timeout', '300ms', async () => {
      source.define(url('idle'));
      const { lookup } = await bed.start({});
      await lookup.lookup(url('idle'));
      // Several timeouts' worth of idleness on the dedicated connection (the pool's are replaced as they go).
      await sleep(1_500);
      expect(lookup.stats().reconnects).toBe(0);
      const before = lookup.stats().hits.memory;
      await lookup.lookup(url('idle'));
      expect(lookup.stats().hits.memory).toBe(before + 1);
    });
  });

  // node-postgres parses timestamps only in the ISO DateStyle (others come back as null).
  it('a non-ISO DateStyle and the fewest float digits: entries still carry their exact creation time, from every tier', async () => {
    await withDatabaseSetting('extra_float_digits', '-15', async () => {
      await withDatabaseSetting('DateStyle', 'SQL, DMY', async () => {
        source.set(url('dated'), { definitions: {}, deps: [], error: { message: 'broken', status: 500 } });
        const { lookup } = await bed.start({});
        const computed = await lookup.lookup(url('dated'));
        expect(computed?.createdAt).toBeInstanceOf(Date);
        expect(Number.isNaN(computed!.createdAt.getTime())).toBe(false);
        // An error entry in memory is checked against its age.
        expect((await lookup.lookup(url('dated')))?.createdAt).toEqual(computed?.createdAt);
        const fromTable = await (await bed.start({})).lookup.lookup(url('dated'));
        expect(fromTable?.createdAt).toEqual(computed?.createdAt);
        expect(Math.abs(computed!.createdAt.getTime() - Date.now())).toBeLessThan(60_000);
      });
    });
  });

  it('SERIALIZABLE by default: lookups, the fence and invalidation work', async () => {
    await withDatabaseSetting('default_transaction_isolation', 'serializable', async () => {
      source.define(url('ser-dep')).define(url('ser'), ['./ser-dep.ts']);
      const { lookup } = await bed.start({});
      expect((await lookup.lookup(url('ser')))?.deps).toEqual([`${REALM}ser-dep`]);
      await lookup.lookup(url('ser-dep'));
      source.version = 2;
      expect(await lookup.invalidate(url('ser-dep'))).toEqual(expect.arrayContaining([url('ser-dep'), url('ser')]));
      expect((await lookup.lookup(url('ser')))?.definitions).toMatchObject({ value: { version: 2 } });
      expect(await lookup.clearAll()).toBe(1);
    });
  });
});
