import { Client } from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { backendPid, frozen, lockWaits, signalsBackends } from '../support/backends';
import { waitFor } from '../support/wait';
import { spawnWorker, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * The fence through dependency graphs, deterministically: invalidations held mid-transaction by
 * a row lock on a row they delete, computations held at a gate, listeners frozen (SIGSTOP of
 * their backend). Each case is an interleaving in which a stale row used to be persisted.
 */
const REALM = 'https://example.test/fence/';
const url = (n: string) => `${REALM}${n}.ts`;

interface Entry {
  url: string;
  definitions: { value: { version: number; depVersions: Record<string, number> } };
  error?: { message: string; additionalErrors?: Array<{ message: string }> };
}

let db: TestDatabase;
const workers: WorkerHandle[] = [];
const locks: Client[] = [];

async function worker(
  name: string,
  listener: boolean,
  sourceOptions = {},
  dependencyErrors: 'compute' | 'cached' = 'compute',
): Promise<WorkerHandle> {
  const w = await spawnWorker(
    name,
    db.url,
    {
      realms: [REALM],
      listener: listener ? { applicationName: `mc-fence-${name}` } : false,
      coalesceAcrossProcesses: false,
      // By default every import is looked up (so computed) and its errors attached: the most that a persist incorporates.
      dependencyErrors,
    },
    sourceOptions,
  );
  workers.push(w);
  return w;
}

async function module(name: string, deps: string[] = [], fields: { version?: number; broken?: boolean } = {}): Promise<void> {
  await db.query(
    `INSERT INTO truth (url, deps, version, broken) VALUES ($1, $2, $3, $4)
     ON CONFLICT (url) DO UPDATE SET deps = EXCLUDED.deps, version = EXCLUDED.version, broken = EXCLUDED.broken`,
    [url(name), deps.map(url), fields.version ?? 1, fields.broken ?? false],
  );
}

async function row(name: string): Promise<Entry | undefined> {
  const rows = await db.query<{ definitions: Entry['definitions']; error: Entry['error'] | null }>(
    `SELECT definitions, error FROM module_cache_entries WHERE url = $1`,
    [url(name)],
  );
  return rows[0] ? { url: url(name), definitions: rows[0].definitions, ...(rows[0].error ? { error: rows[0].error } : {}) } : undefined;
}

/** A session holding a row lock on the cache row of `name`: an invalidation deleting it waits, mid-transaction, until unlock(). */
async function lockRow(name: string): Promise<{ unlock(): Promise<void> }> {
  const client = new Client({ connectionString: db.url, application_name: 'mc-fence-row-lock' });
  await client.connect();
  locks.push(client);
  await client.query('BEGIN');
  const locked = await client.query(`SELECT 1 FROM module_cache_entries WHERE url = $1 FOR UPDATE`, [url(name)]);
  expect(locked.rowCount).toBe(1);
  return {
    async unlock() {
      await client.query('COMMIT');
    },
  };
}

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
}, 60_000);

afterEach(async () => {
  await Promise.all(locks.splice(0).map((c) => c.end().catch(() => undefined)));
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

afterAll(async () => {
  await db?.drop();
});

describe('the fence holds through dependency graphs', () => {
  it('a dependency entry a stalled peer still holds in memory is not built into a new consumer', async (ctx) => {
    if (!(await signalsBackends(db))) return ctx.skip();
    await module('d1');
    await module('e1', ['d1']);
    const a = await worker('a', true);
    const b = await worker('b', true);
    // Dependencies are looked up by alias (extensionless): that is the spelling B's memory must hold.
    const d1 = `${REALM}d1`;
    await b.call('lookup', d1);
    expect(await b.call('inMemory', d1)).toBe(true);
    // B's listener stops hearing anything: D's invalidation will not reach B's memory.
    await frozen(await backendPid(db, 'mc-fence-b'), async () => {
      await module('d1', [], { version: 2, broken: true });
      await a.call('invalidate', url('d1'));
      expect(await b.call('inMemory', d1)).toBe(true);
      const e = await b.call<Entry>('lookup', url('e1'));
      // E was built from D's entry as it is now (broken), not from the one in B's memory.
      expect(e.error?.message).toMatch(/dependency .*d1.* failed: broken/);
    });
    expect((await row('e1'))?.error?.message).toMatch(/broken: .*d1\.ts v2/);
  });

  // The consumer's computation starts after the clear, so its own inputs pass the fence: only the
  // check of the dependency entry it incorporated (against that entry's older watermark) can see
  // that a realm or global clear removed it.
  for (const how of ['clearRealm', 'clearAll'] as const) {
    it(`a dependency entry a stalled peer still holds in memory after a ${how} it did not hear is not built into a new consumer`, async (ctx) => {
      if (!(await signalsBackends(db))) return ctx.skip();
      const [d, e] = [`d8${how}`, `e8${how}`];
      await module(d);
      await module(e, [d]);
      const a = await worker('a', true);
      const b = await worker('b', true);
      await b.call('lookup', `${REALM}${d}`);
      await frozen(await backendPid(db, 'mc-fence-b'), async () => {
        await module(d, [], { version: 2, broken: true });
        if (how === 'clearRealm') await a.call('clearRealm', REALM);
        else await a.call('clearAll');
        expect(await b.call('inMemory', `${REALM}${d}`)).toBe(true);
        const entry = await b.call<Entry>('lookup', url(e));
        expect(entry.error?.message).toMatch(new RegExp(`dependency .*${d}.* failed: broken`));
      });
      expect((await row(e))?.error?.message).toMatch(new RegExp(`broken: .*${d}\\.ts v2`));
    });
  }

  it("with the reference's dependency errors (cached entries only), a stale cached dependency is not attached either", async (ctx) => {
    if (!(await signalsBackends(db))) return ctx.skip();
    await module('d7');
    await module('e7', ['d7'], { broken: true }); // E errors itself: its dependencies' cached errors get attached
    const a = await worker('a', true, {}, 'cached');
    const b = await worker('b', true, {}, 'cached');
    const d7 = `${REALM}d7`;
    await b.call('lookup', d7);
    await frozen(await backendPid(db, 'mc-fence-b'), async () => {
      await module('d7', [], { version: 2, broken: true });
      await a.call('invalidate', url('d7'));
      await a.call('lookup', url('d7')); // D's new, broken row is cached now; B still holds the old one
      expect(await b.call('inMemory', d7)).toBe(true);
      const e = await b.call<Entry>('lookup', url('e7'));
      expect(e.error?.additionalErrors?.map((x) => x.message)).toEqual([`broken: ${url('d7')} v2`]);
    });
    expect((await row('e7'))?.error?.additionalErrors?.map((x) => x.message)).toEqual([`broken: ${url('d7')} v2`]);
  });

  it('a dependency row read while its invalidation is still uncommitted is not built into a new consumer', async () => {
    await module('d2');
    await module('e2', ['d2']);
    const a = await worker('a', false);
    const b = await worker('b', false);
    const c = await worker('c', false);
    await c.call('lookup', url('d2')); // D's row exists; B has never seen it
    const held = await lockRow('d2');
    await module('d2', [], { version: 2, broken: true });
    // A's invalidation has its sequence number and waits on the row lock, uncommitted.
    const invalidating = a.call('invalidate', url('d2'));
    await waitFor(async () => (await lockWaits(db, 'transactionid')) > 0, 10_000, 'the invalidation to wait on the row lock');
    // B computes E now: the miss and D's row are read while the invalidation is in flight.
    const looking = b.call<Entry>('lookup', url('e2'));
    await waitFor(async () => (await lockWaits(db, 'advisory')) > 0, 10_000, "E's persist to wait for the invalidation");
    await held.unlock();
    await invalidating;
    const e = await looking;
    expect(e.error?.message).toMatch(/d2.*broken/);
    expect((await row('e2'))?.error?.message).toMatch(/broken: .*d2\.ts v2/);
  });

  it("a module's first computation is refused when a peer that is not heard invalidates one of its imports", async () => {
    await module('d3');
    await module('e3', ['d3']);
    const a = await worker('a', false);
    const b = await worker('b', false);
    await b.call('hold', url('e3'));
    const looking = b.call<Entry>('lookup', url('e3'));
    await waitFor(async () => (await b.call<number>('waiting', url('e3'))) === 1, 10_000, 'E computing');
    // E has never been persisted: no edge E → D exists yet; only E's declared imports can fence it.
    await module('d3', [], { version: 2 });
    await a.call('invalidate', url('d3'));
    await b.call('release', url('e3'));
    expect((await looking).definitions.value.depVersions[url('d3')]).toBe(2);
    expect((await row('e3'))?.definitions.value.depVersions[url('d3')]).toBe(2);
  });

  it('a computation that read a module transitively is refused when that module changed, through edges learnt meanwhile', async () => {
    // The source reads every version below an import (as a bundler would) and declares direct imports only.
    await module('x4');
    await module('d4', ['x4']);
    await module('m4', ['d4']);
    const a = await worker('a', false, { transitiveReads: true });
    const b = await worker('b', false, { transitiveReads: true });
    await b.call('hold', url('m4'));
    const looking = b.call<Entry>('lookup', url('m4'));
    await waitFor(async () => (await b.call<number>('waiting', url('m4'))) === 1, 10_000, 'M computing');
    await module('x4', [], { version: 2 });
    await a.call('invalidate', url('x4')); // nothing is known to import x4 yet
    await a.call('lookup', url('d4')); // now D → X is known
    await b.call('release', url('m4'));
    expect((await looking).definitions.value.depVersions[url('x4')]).toBe(2);
    expect((await row('m4'))?.definitions.value.depVersions[url('x4')]).toBe(2);
  });

  for (const how of ['clearRealm', 'clearAll'] as const) {
    it(`${how} by a peer that is not heard refuses an in-flight computation of the realm`, async () => {
      await module(`r5${how}`);
      const a = await worker('a', false);
      const b = await worker('b', false);
      await b.call('hold');
      const looking = b.call<Entry>('lookup', url(`r5${how}`));
      await waitFor(async () => (await b.call<number>('waiting')) === 1, 10_000, 'the computation');
      await module(`r5${how}`, [], { version: 2 });
      if (how === 'clearRealm') await a.call('clearRealm', REALM);
      else await a.call('clearAll');
      await b.call('release');
      expect((await looking).definitions.value.version).toBe(2);
      expect((await row(`r5${how}`))?.definitions.value.version).toBe(2);
    });
  }
});

describe('the fence under REPEATABLE READ', () => {
  it('a persist that waited behind an invalidation still sees it (the statement runs under READ COMMITTED)', async () => {
    await db.query(`ALTER DATABASE ${db.name} SET default_transaction_isolation = 'repeatable read'`);
    try {
      await module('n6', ['m6']);
      await module('m6');
      const a = await worker('a', false);
      const b = await worker('b', false);
      await a.call('lookup', url('n6')); // N's row and the edge N → M
      await db.query(`DELETE FROM module_cache_entries WHERE url = $1`, [url('m6')]);
      await b.call('hold', url('m6'));
      const looking = b.call<Entry>('lookup', url('m6'));
      await waitFor(async () => (await b.call<number>('waiting', url('m6'))) === 1, 10_000, 'M computing');
      const held = await lockRow('n6');
      await module('m6', [], { version: 2 });
      const invalidating = a.call('invalidate', url('m6'));
      await waitFor(async () => (await lockWaits(db, 'transactionid')) > 0, 10_000, 'the invalidation to wait on the row lock');
      await b.call('release', url('m6'));
      await waitFor(async () => (await lockWaits(db, 'advisory')) > 0, 10_000, "M's persist to wait for the invalidation");
      await held.unlock();
      await invalidating;
      expect((await looking).definitions.value.version).toBe(2);
      expect((await row('m6'))?.definitions.value.version).toBe(2);
    } finally {
      await db.query(`ALTER DATABASE ${db.name} RESET default_transaction_isolation`);
    }
  });
});
