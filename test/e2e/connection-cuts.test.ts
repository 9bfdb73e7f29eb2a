import { afterAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { migrate } from '../support/app';
import { createTestDatabase } from '../support/database';
import { startChaosProxy } from '../support/faults/chaos-proxy';
import {
  ErrorTally,
  errorRows,
  listenerStates,
  moduleUrls,
  seedGraph,
  sqlPool,
  staleRows,
  staleServes,
  startLoops,
  watchLiveness,
  awaitRecovery,
} from '../support/faults/storm';
import { waitFor, within } from '../support/wait';
import { spawnWorkers, type WorkerHandle } from '../processes/harness';

/**
 * Connections cut at random moments (issue 18's other face: a connection lost while a statement is
 * in flight on it). Three processes reach the database only through a chaos proxy — their TypeORM
 * pools, their dedicated listener connections (derived from the DataSource) and their truth
 * sources' pools — which destroys random live connections (reset or close) while the processes
 * look up and invalidate modules of a graph with a cycle, and look up the same cold module from
 * every process at once (cross-process coalescing, claims on the dedicated connections). Then the
 * cuts stop: every process must still be alive, recover, and serve nothing stale.
 */
const REALM = 'https://example.test/cuts/';
const URLS = moduleUrls(REALM);
const CHAOS_MS = 16_000;

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
}, 120_000);

interface ListenerState {
  state: string;
  probe: { ok: boolean | undefined; at?: string };
}

describe('connections cut at random (separate OS processes behind a chaos proxy)', () => {
  it('3 processes, random cuts of pooled, dedicated and source connections mid-traffic: all alive, recovered, nothing stale', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    await migrate(db.url);
    // The test's own SQL goes to the server directly: only the processes' connections are cut.
    const sql = sqlPool(db.url, 'mc-cuts-test');
    cleanups.push(() => sql.end());
    await seedGraph(sql, REALM);
    const proxy = await startChaosProxy(db.url);
    cleanups.push(() => proxy.close());

    const workers = await spawnWorkers(
      3,
      proxy.url,
      (i) => ({
        realms: [REALM],
        sourceTimeoutMs: 20_000,
        listener: {
          applicationName: `mc-cuts-${i}`,
          reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
          heartbeat: { intervalMs: 1_000, timeoutMs: 2_000 },
        },
      }),
      { pool: { applicationNamePrefix: 'mc-cuts-pool-' } },
    );
    cleanups.push(() => Promise.all(workers.map((w) => w.stop())));
    const liveness = watchLiveness(workers);
    await Promise.all(workers.map((w) => w.call('setDelay', 3)));
    await Promise.all(workers.map((w) => w.call('lookupAll', URLS)));

    const tally = new ErrorTally();
    const deadline = performance.now() + CHAOS_MS;
    proxy.startChaos({ meanIntervalMs: 150 });
    const loops = startLoops({
      workers,
      urls: URLS,
      sql,
      tally,
      concurrency: 2,
      invalidateShare: 0.25,
      maxOps: 5_000,
      deadline,
      pauseMs: 5,
    });
    cleanups.push(async () => {
      loops.stop();
      await within(loops.done, 30_000, 'the loops to stop');
    });
    // Coalescing: a module changes, is invalidated, and every process looks it up at once, twice.
    let bursts = 0;
    const coalescing = (async () => {
      while (performance.now() < deadline && liveness.allAlive()) {
        const target = URLS[Math.floor(Math.random() * URLS.length)];
        const announcer = workers[bursts++ % workers.length];
        try {
          await sql.query(`UPDATE truth SET version = version + 1 WHERE url = $1`, [target]);
          await announcer.call('invalidate', target);
        } catch (error) {
          tally.add(error, 'burst invalidate: ');
        }
        await Promise.all(
          workers.flatMap((w: WorkerHandle) =>
            [0, 1].map(() => w.call('lookup', target).catch((e: unknown) => tally.add(e, 'burst lookup: '))),
          ),
        );
        await sleep(100);
      }
    })();

    const { lookups, invalidations } = await liveness.alive(within(loops.done, CHAOS_MS + 60_000, 'the loops to finish'));
    await liveness.alive(within(coalescing, 60_000, 'the coalescing bursts to finish'));
    proxy.stopChaos();
    const cuts = proxy.cuts;
    // Which kind of connection each cut hit, from the application_name it connected with.
    const cutKinds: Record<string, number> = {};
    for (const [name, n] of Object.entries(proxy.cutsByApplication())) {
      const kind = name.startsWith('mc-cuts-pool-')
        ? 'pooled'
        : name.startsWith('mc-cuts-')
          ? 'dedicated'
          : name.startsWith('truth-')
            ? 'source pool'
            : `other (${name})`;
      cutKinds[kind] = (cutKinds[kind] ?? 0) + n;
    }

    // Recovery: listening again, and every module looked up in every process.
    const recoveredMs = await awaitRecovery(workers, URLS, liveness);

    // Quiet: every module invalidated once more (a writer's invalidation may have failed after its
    // truth update), then two heartbeat probes sent after that reach every listener: NOTIFYs arrive
    // in commit order, so every invalidation before them has been heard everywhere.
    for (const [i, u] of URLS.entries()) await liveness.alive(workers[i % workers.length].call('invalidate', u));
    for (let probe = 0; probe < 2; probe++) {
      const after = Date.now();
      await liveness.alive(
        waitFor(
          async () =>
            (await Promise.all(workers.map((w) => w.call<ListenerState>('listenerState')))).every(
              (s) => s.state === 'listening' && s.probe.ok === true && s.probe.at !== undefined && Date.parse(s.probe.at) > after,
            ),
          20_000,
          'a heartbeat probe sent after the last invalidation to reach every listener',
        ),
      );
    }
    const serves = await liveness.alive(staleServes(workers, sql, URLS));
    const stale = await staleRows(sql);
    const errors = await errorRows(sql);
    const states = await listenerStates(workers);

    process.stdout.write(
      `[connection-cuts] ${cuts} cuts ${JSON.stringify(cutKinds)} (of ${proxy.connections} connections through the proxy), ` +
        `${workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null).length} processes alive, ` +
        `${lookups} lookups + ${invalidations} invalidations + ${bursts} coalescing bursts, recovered in ${recoveredMs.toFixed(0)} ms, ` +
        `errors by kind ${JSON.stringify(tally.byKind())}, stale rows ${stale.length}, stale serves ${serves.length}\n`,
    );

    expect(cuts).toBeGreaterThan(0);
    expect(liveness.allAlive()).toBe(true);
    expect(liveness.exits).toEqual([]);
    expect(states).toEqual(['listening', 'listening', 'listening']);
    expect(errors).toEqual([]);
    expect(stale).toEqual([]);
    expect(serves).toEqual([]);
  }, 180_000);
});
