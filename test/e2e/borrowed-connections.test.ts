import { Client } from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { DatabaseUnavailableError, InvalidationBroadcastError } from '../../src';
import { FENCE_LOCK } from '../../src/persistence/sql';
import { createCacheApp } from '../support/app';
import { FakeSource } from '../support/fake-source';
import { startTcpProxy } from '../support/faults/tcp-proxy';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

/**
 * A statement in flight on a connection borrowed from the pool when its backend dies. pg's pool
 * takes its own 'error' listener off a client while it is lent out: a connection lost then was an
 * uncaught 'error' event, and the process died (every process, on a database restart).
 */
const REALM = 'https://example.test/borrowed/';
const source = new FakeSource();
const bed = useCacheTestBed({ source, realms: [REALM], listener: false, memory: false });
const holders: Client[] = [];

afterEach(async () => {
  await Promise.all(holders.splice(0).map((c) => c.end().catch(() => undefined)));
});

/** Holds the fence lock exclusively from a connection of the test's own: persists and invalidations wait for it in the database. */
async function holdFence(): Promise<void> {
  const client = new Client({ connectionString: bed.db.url });
  client.on('error', () => undefined);
  await client.connect();
  holders.push(client);
  await client.query('SELECT pg_advisory_lock($1, $2)', [FENCE_LOCK.classId, FENCE_LOCK.objectId]);
}

/** The pid of the one backend of this database waiting on an advisory lock (the borrowed connection). */
function fenceWaiter(): Promise<number> {
  return waitFor(
    async () => {
      const rows = await bed.db.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
        [bed.db.name],
      );
      return rows.length === 1 ? rows[0].pid : undefined;
    },
    10_000,
    'a statement waiting for the fence lock',
  );
}

/** Terminates the one backend of this database waiting on an advisory lock (the borrowed connection). */
async function terminateWaiter(): Promise<void> {
  const pid = await fenceWaiter();
  await bed.db.query('SELECT pg_terminate_backend($1)', [pid]);
}

/** The error a call rejects with (undefined if it resolves), handled from the start. */
const settled = (call: Promise<unknown>): Promise<unknown> =>
  call.then(
    () => undefined,
    (e: unknown) => e,
  );

describe('a borrowed connection whose backend is terminated mid-statement', () => {
  it('fails the persist with E_DATABASE_UNAVAILABLE, keeps the process alive, and the next lookup works', async () => {
    const { lookup } = await bed.start({});
    source.define(`${REALM}a.ts`);
    await holdFence();
    const pending = settled(lookup.lookup(`${REALM}a.ts`));
    await terminateWaiter();
    const error = await pending;
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect((error as DatabaseUnavailableError).code).toBe('E_DATABASE_UNAVAILABLE');
    await holders.splice(0)[0].end();
    // The broken connection was not handed out again: the pool serves the next statements.
    expect((await lookup.lookup(`${REALM}a.ts`))?.definitions).toEqual({ value: { version: 1, url: `${REALM}a.ts` } });
    expect(await bed.db.query(`SELECT url FROM module_cache_entries WHERE error IS NOT NULL`)).toEqual([]);
  });

  it('fails the invalidation with a coded error whose cause is the lost connection', async () => {
    const { lookup } = await bed.start({});
    source.define(`${REALM}b.ts`);
    await lookup.lookup(`${REALM}b.ts`);
    await holdFence();
    const pending = settled(lookup.invalidate(`${REALM}b.ts`));
    await terminateWaiter();
    const error = await pending;
    expect(error).toBeInstanceOf(InvalidationBroadcastError);
    expect((error as Error).cause).toBeInstanceOf(DatabaseUnavailableError);
    await holders.splice(0)[0].end();
    expect(await lookup.invalidate(`${REALM}b.ts`)).toContain(`${REALM}b.ts`);
  });

  it('a connection that drops without a word (a server crash, a network cut) mid-persist is no uncaught error', async () => {
    // Through a proxy that can cut every socket: no ErrorResponse, just the end of the stream,
    // which pg reports as an 'error' event on the client while the pool has lent it out.
    const proxy = await startTcpProxy(bed.db.url);
    const app = await createCacheApp(proxy.url, { source, realms: [REALM], listener: false, memory: false });
    try {
      source.define(`${REALM}c.ts`);
      await holdFence();
      const pending = settled(app.lookup.lookup(`${REALM}c.ts`));
      await fenceWaiter();
      expect(proxy.cut()).toBeGreaterThan(0);
      const error = await pending;
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      await holders.splice(0)[0].end();
      expect((await app.lookup.lookup(`${REALM}c.ts`))?.url).toBe(`${REALM}c.ts`);
    } finally {
      await app.close();
      await proxy.close();
    }
  });
});
