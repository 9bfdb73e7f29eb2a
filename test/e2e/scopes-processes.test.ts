import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { PRIVATE_REALM, PUBLIC_REALM, scopeFor } from '../processes/scoped-realms';

/**
 * The one scope rule across processes: two processes call every entry point, with and without
 * options and with users, concurrently, against a scopeFor that depends on the realm and the user
 * (test/processes/scoped-worker.ts). No entry may be served in a scope other than the rule's.
 */
interface Worker {
  child: ChildProcess;
  call<T>(method: string, ...args: unknown[]): Promise<T>;
}

let db: TestDatabase;
const workers: Worker[] = [];

async function spawn(name: string): Promise<Worker> {
  const child = fork(join(__dirname, '../processes/scoped-worker.ts'), [], {
    execArgv: ['-r', 'ts-node/register/transpile-only'],
    env: { ...process.env, DATABASE_URL: db.url, WORKER_NAME: name, TS_NODE_PROJECT: join(__dirname, '../../tsconfig.json') },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let next = 1;
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before it was ready`)));
    child.on(
      'message',
      (m: { ready?: boolean; id?: number; ok?: boolean; result?: unknown; error?: { message: string; code?: string } }) => {
        if (m.ready) return resolve();
        const waiter = pending.get(m.id!);
        pending.delete(m.id!);
        if (m.ok) waiter?.resolve(m.result);
        else waiter?.reject(Object.assign(new Error(m.error!.message), { code: m.error!.code }));
      },
    );
  });
  return {
    child,
    call: <T>(method: string, ...args: unknown[]) =>
      new Promise<T>((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ id, method, args });
      }),
  };
}

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  workers.push(await spawn('mc-scoped-a'), await spawn('mc-scoped-b'));
}, 90_000);

afterAll(async () => {
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          w.child.once('exit', () => resolve());
          w.child.send({ id: 0, method: 'exit', args: [] });
          setTimeout(() => w.child.kill('SIGKILL'), 10_000).unref();
        }),
    ),
  );
  await db?.drop();
});

type Options = { scope?: string; user?: string } | undefined;
type Entry = { scope: string; definitions: { computedFor: { scope: string } } } | null;

describe('the scope rule in two processes', () => {
  it('every entry point, with and without options, with users, concurrently: only the scope the rule gives', async () => {
    const optionSets: Options[] = [
      undefined,
      {},
      { user: 'alice' },
      { user: 'bob' },
      { scope: 'team:x' },
      { scope: 'public', user: 'bob' },
    ];
    const urls = [PUBLIC_REALM, PRIVATE_REALM].flatMap((realm) => [0, 1, 2].map((i) => `${realm}m${i}.ts`));
    const expected = (url: string, o: Options) =>
      o?.scope ?? scopeFor(url.startsWith(PUBLIC_REALM) ? PUBLIC_REALM : PRIVATE_REALM, o?.user);
    const mismatches: string[] = [];
    const check = (what: string, url: string, o: Options, entry: Entry | undefined) => {
      if (!entry) return; // lookupCached / lookupMany before the entry exists
      const want = expected(url, o);
      if (entry.scope !== want || entry.definitions.computedFor.scope !== want)
        mismatches.push(
          `${what}(${url}, ${JSON.stringify(o)}): served ${entry.scope} computed for ${entry.definitions.computedFor.scope}, want ${want}`,
        );
    };
    const args = (o: Options) => (o === undefined ? [] : [o]);
    const round = () =>
      Promise.all(
        workers.flatMap((w) =>
          urls.flatMap((url) =>
            optionSets.flatMap((o) => [
              w.call<Entry>('lookup', url, ...args(o)).then((e) => check('lookup', url, o, e)),
              w.call<Entry>('lookupCached', url, ...args(o)).then((e) => check('lookupCached', url, o, e)),
              w.call<Record<string, Entry>>('lookupMany', [url], ...args(o)).then((m) => check('lookupMany', url, o, m[url])),
              w.call<{ scope: string }>('lookupDefinition', url, 'computedFor', ...args(o)).then((d) => {
                if (d.scope !== expected(url, o)) mismatches.push(`lookupDefinition(${url}, ${JSON.stringify(o)}): ${d.scope}`);
              }),
            ]),
          ),
        ),
      );
    await round(); // cold: computations and coalescing across the two processes
    await round(); // warm: memory and the hot path
    await workers[0].call('invalidate', urls[3]);
    await round(); // after a broadcast invalidation
    expect(mismatches).toEqual([]);
    for (const url of urls) {
      const rows = await db.query<{ scope: string }>(`SELECT scope FROM module_cache_entries WHERE url = $1 ORDER BY scope`, [url]);
      expect(rows.map((r) => r.scope)).toEqual([...new Set(optionSets.map((o) => expected(url, o)))].sort());
    }
  }, 120_000);
});
