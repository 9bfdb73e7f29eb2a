import { afterAll, describe, expect, it } from 'vitest';
import { migrate } from '../support/app';
import { backendPid, signalsBackends } from '../support/backends';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { waitFor } from '../support/wait';
import { spawnWorkers, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * A randomized stress over an import graph: 4 processes (three listening, their listener backends
 * frozen for short spells; one that never hears anything and keeps no memory), random version
 * changes and broken/fixed toggles, each followed by an invalidation through a random process,
 * while all of them look modules up. After quiescence every row and every process's answer must
 * equal a clean recomputation from the truth table. Once per isolation level.
 */
const REALM = 'https://example.test/graph/';
const DAG = 20;
const url = (name: string) => `${REALM}${name}.ts`;
const cleanups: Array<() => Promise<unknown>> = [];

interface Truth {
  url: string;
  version: number;
  deps: string[];
  broken: boolean;
}

interface ErrorDoc {
  message: string;
  url?: string;
  fromDependency?: boolean;
  additionalErrors?: ErrorDoc[];
}

interface Answer {
  definitions: { value: { version: number; depVersions: Record<string, number> } };
  error?: ErrorDoc | null;
}

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

/** A DAG n0..n19 (each imports one or two earlier modules) and a cycle c0 ↔ c1 that imports nothing breakable. */
function graph(random: () => number): Truth[] {
  const modules: Truth[] = [];
  for (let i = 0; i < DAG; i++) {
    const deps = new Set<string>();
    for (let k = 0; i > 0 && k < 1 + Math.floor(random() * 2); k++) deps.add(url(`n${Math.floor(random() * i)}`));
    modules.push({ url: url(`n${i}`), version: 1, deps: [...deps], broken: false });
  }
  modules.push(
    { url: url('c0'), version: 1, deps: [url('c1')], broken: false },
    { url: url('c1'), version: 1, deps: [url('c0')], broken: false },
  );
  return modules;
}

/** What a clean computation stores: own version, the direct imports' versions, and every broken module at or below it. */
function expected(truth: Map<string, Truth>, moduleURL: string) {
  const broken = new Set<string>();
  const seen = new Set<string>();
  const visit = (u: string) => {
    if (seen.has(u)) return;
    seen.add(u);
    const t = truth.get(u)!;
    if (t.broken) broken.add(`broken: ${u} v${t.version}`);
    t.deps.forEach(visit);
  };
  visit(moduleURL);
  const t = truth.get(moduleURL)!;
  return canonical({
    version: t.version,
    depVersions: Object.fromEntries(t.deps.filter((d) => d !== moduleURL).map((d) => [d, truth.get(d)!.version])),
    errors: [...broken].sort(),
  });
}

/** JSON with sorted keys, to compare two states as text. */
function canonical(state: { version: number; depVersions: Record<string, number>; errors: string[] }): string {
  return JSON.stringify({
    ...state,
    depVersions: Object.fromEntries(Object.entries(state.depVersions).sort(([a], [b]) => a.localeCompare(b))),
  });
}

function observed(answer: Answer) {
  const messages = (e: ErrorDoc | null | undefined): string[] =>
    e ? [...(e.fromDependency ? [] : [e.message]), ...(e.additionalErrors ?? []).flatMap((a) => [a.message])] : [];
  return canonical({
    version: answer.definitions.value.version,
    depVersions: answer.definitions.value.depVersions,
    errors: messages(answer.error).sort(),
  });
}

async function run(isolation: 'read committed' | 'repeatable read'): Promise<void> {
  const db: TestDatabase = await createTestDatabase();
  cleanups.push(() => db.drop());
  await db.query(`ALTER DATABASE ${db.name} SET default_transaction_isolation = '${isolation}'`);
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const modules = graph(random);
  for (const m of modules) await db.query(`INSERT INTO truth (url, version, deps) VALUES ($1, 1, $2)`, [m.url, m.deps]);
  await db.query(`INSERT INTO truth (url) VALUES ($1)`, [url('marker')]);

  const workers: WorkerHandle[] = await spawnWorkers(4, db.url, (i) => ({
    realms: [REALM],
    // Every import looked up and its errors attached: what "a clean recomputation" means below.
    dependencyErrors: 'compute' as const,
    sourceTimeoutMs: 10_000,
    ...(i < 3 ? { listener: { applicationName: `mc-graph-${i}` } } : { listener: false, memory: false }),
  }));
  cleanups.push(() => Promise.all(workers.map((w) => w.stop())));
  await Promise.all(workers.map((w) => w.call('setDelay', 15)));
  const listeners = await Promise.all([0, 1, 2].map((i) => backendPid(db, `mc-graph-${i}`)));

  let lookups = 0;
  let changes = 0;
  let freezes = 0;
  const failures: string[] = [];
  let done = false;
  const fail = (e: Error) => failures.push(e.message.replace(/https?:\/\/\S+/g, '<url>'));
  const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)];

  const lookupLoops = workers.map(async (w) => {
    while (!done) {
      lookups += 3;
      await Promise.all([0, 1, 2].map(() => w.call('lookup', pick(modules).url).catch(fail)));
    }
  });
  const freezeLoop = (async () => {
    while (!done) {
      const pid = pick(listeners);
      process.kill(pid, 'SIGSTOP');
      freezes++;
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 300));
      process.kill(pid, 'SIGCONT');
      await new Promise((r) => setTimeout(r, Math.random() * 200));
    }
  })();
  for (let i = 0; i < 150; i++) {
    const m = pick(modules);
    const toggle = m.url.includes('/n') && Math.random() < 0.35;
    // The module changes first, then the change is announced: the order a real writer follows.
    await db.query(
      toggle ? `UPDATE truth SET broken = NOT broken WHERE url = $1` : `UPDATE truth SET version = version + 1 WHERE url = $1`,
      [m.url],
    );
    changes++;
    await pick(workers).call('invalidate', m.url).catch(fail);
  }
  done = true;
  await Promise.all([...lookupLoops, freezeLoop]);
  listeners.forEach((pid) => process.kill(pid, 'SIGCONT'));

  // Quiescence: every listener has applied everything once it has applied a later marker.
  await Promise.all(workers.slice(0, 3).map((w) => w.call('lookup', url('marker'))));
  await workers[3].call('invalidate', url('marker'));
  await waitFor(
    async () => (await Promise.all(workers.slice(0, 3).map((w) => w.call<boolean>('inMemory', url('marker'))))).every((held) => !held),
    20_000,
    'every listener to apply the last invalidation',
  );

  const truth = new Map(
    (await db.query<{ url: string; version: number; deps: string[]; broken: boolean }>(`SELECT url, version, deps, broken FROM truth`)).map(
      (t) => [t.url, t],
    ),
  );
  const staleRows: string[] = [];
  const rows = await db.query<{ url: string; definitions: Answer['definitions']; error: ErrorDoc | null }>(
    `SELECT url, definitions, error FROM module_cache_entries WHERE url <> $1`,
    [url('marker')],
  );
  for (const r of rows) {
    if (observed(r) !== expected(truth, r.url)) staleRows.push(`${r.url}: ${observed(r)} expected ${expected(truth, r.url)}`);
  }
  const staleServes: string[] = [];
  for (const w of workers) {
    for (const m of modules) {
      const answer = await w.call<Answer>('lookup', m.url);
      if (observed(answer) !== expected(truth, m.url))
        staleServes.push(`${w.name} ${m.url}: ${observed(answer)} expected ${expected(truth, m.url)}`);
    }
  }
  process.stdout.write(
    `[graph-stress] ${isolation}: 4 processes, ${modules.length} modules, ${lookups} lookups + ${changes} changes/invalidations, ` +
      `${freezes} listener freezes, ${failures.length} failed ops, ${rows.length} rows, stale rows: ${staleRows.length}, stale serves: ${staleServes.length}\n`,
  );
  expect(staleRows).toEqual([]);
  expect(staleServes).toEqual([]);
  expect(failures).toEqual([]);
}

describe('randomized graph stress (separate OS processes, frozen listeners, a deaf peer)', () => {
  for (const isolation of ['read committed', 'repeatable read'] as const) {
    it(`after quiescence every row and every answer is a clean recomputation (${isolation})`, async (ctx) => {
      const probe = await createTestDatabase();
      const allowed = await signalsBackends(probe).finally(() => probe.drop());
      if (!allowed) return ctx.skip();
      await run(isolation);
    }, 240_000);
  }
});
