import { afterAll, describe, expect, it } from 'vitest';
import { migrate } from '../support/app';
import { claimHeld, databaseClock, waitForClaimAttempts } from '../support/claims';
import { withDatabase } from '../support/database';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../support/embedded-postgres';
import {
  ErrorTally,
  errorRows,
  listenerStates,
  moduleUrl,
  moduleUrls,
  openSession,
  seedGraph,
  sqlPool,
  staleRows,
  staleServes,
  startLoops,
  watchLiveness,
  awaitRecovery,
  type Session,
  type Sql,
} from '../support/faults/storm';
import { waitFor, within } from '../support/wait';
import { spawnWorkers } from '../processes/harness';

/**
 * Issue 18: PostgreSQL restarted with `-m immediate` (SIGQUIT: every backend dies mid-statement)
 * while work was in flight on every kind of connection killed every process. Twice, on a server of
 * this file's own, work is parked in the database on each kind of connection a process uses, by
 * locks the test holds, and then the server is shut down immediately and started again:
 *  - persists (shared fence lock) and invalidations (exclusive) of the repository's borrowed
 *    pooled clients, waiting for the fence lock this test holds exclusively;
 *  - acknowledgements and lease renewals (strong consistency) of those clients, waiting for the
 *    peers' rows this test holds locked, so the invalidations that sent sync markers wait for them;
 *  - a cross-process claim held on a process's dedicated connection (its source parked at a
 *    gate) while the two other processes wait for it;
 *  - the truth source's own pool, waiting for the truth table this test holds locked;
 *  - the listeners' LISTEN connections, and random lookups and invalidations in every process.
 * Every process must live through both restarts, recover, and end up consistent.
 */
const REALM = 'https://example.test/storm/';
const URLS = moduleUrls(REALM);
/** The module whose computation is parked at a gate: it imports nothing and no loop touches it. */
const GATED = moduleUrl(REALM, 14);
const LOOP_URLS = URLS.filter((u) => u !== GATED);
const FENCE_LOCK = 'SELECT pg_advisory_lock(28003, 0)';

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
}, 120_000);

/** Backends of this database waiting for a lock, with the given extra condition. */
async function lockWaiters(sql: Sql, condition: string): Promise<number> {
  const [{ n }] = await sql.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND ${condition}`,
  );
  return n;
}

const WAITING = {
  acknowledgements: `query LIKE '%acked_seq = greatest%'`,
  renewals: `query LIKE '%INSERT INTO module_cache_peers%'`,
  persists: `wait_event = 'advisory' AND query LIKE '%module_cache_persist_fenced(%'`,
  invalidations: `wait_event = 'advisory' AND query LIKE '%module_cache_invalidate%'`,
  truthReads: `wait_event = 'relation' AND application_name LIKE 'truth-w%'`,
};

describe('PostgreSQL immediate shutdown with work in flight on every kind of connection (separate OS processes)', () => {
  it("3 strong-consistency processes live through two '-m immediate' restarts mid-storm, recover, and serve nothing stale", async () => {
    const pg: EmbeddedDatabase = await startEmbeddedPostgres();
    cleanups.push(() => pg.stop());
    const admin = sqlPool(pg.url);
    await admin.query(`CREATE DATABASE storm`);
    await admin.end();
    const dbUrl = withDatabase(pg.url, 'storm');
    await migrate(dbUrl);
    const sql = sqlPool(dbUrl);
    cleanups.push(() => sql.end());
    await seedGraph(sql, REALM);

    const workers = await spawnWorkers(
      3,
      dbUrl,
      (i) => ({
        realms: [REALM],
        consistency: 'strong',
        // Lease renewals are parked with the acknowledgements: the heartbeat must not give up on
        // them (and reconnect) before the fault, nor the leases run out (ending the ack waits).
        leaseMs: 12_000,
        sourceTimeoutMs: 30_000,
        // Persists and invalidations park at the fence until the fault: they must not give up first.
        fenceWaitMs: 0,
        listener: {
          applicationName: `mc-storm-${i}`,
          reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
          heartbeat: { intervalMs: 2_000, timeoutMs: 6_000 },
        },
      }),
      // Room in each pool for every kind of statement to be parked in the database at once.
      { pool: { max: 8, applicationNamePrefix: 'mc-storm-pool-' } },
    );
    cleanups.push(() => Promise.all(workers.map((w) => w.stop())));
    const liveness = watchLiveness(workers);
    const [w0, w1, w2] = workers;
    const livePeers = async () =>
      (await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM module_cache_peers WHERE lease_expires_at > now()`))[0].n;
    await waitFor(async () => (await livePeers()) === 3, 30_000, 'three members');
    await Promise.all(workers.map((w) => w.call('lookupAll', URLS)));

    const tally = new ErrorTally();
    // The loops' truth updates have a pool of their own: parked on the truth table, they must not starve the test's probes.
    const loopSql = sqlPool(dbUrl, 'mc-storm-writers');
    cleanups.push(() => loopSql.end());
    const loops = startLoops({
      workers,
      urls: LOOP_URLS,
      sql: loopSql,
      tally,
      concurrency: 2,
      invalidateShare: 0.3,
      maxOps: 1_500,
      deadline: performance.now() + 150_000,
      pauseMs: 15,
    });
    cleanups.push(async () => {
      loops.stop();
      await within(loops.done, 30_000, 'the loops to stop');
    });

    const recoveries: number[] = [];
    const inFlight: string[] = [];
    for (let round = 0; round < 2; round++) {
      const sessions: Session[] = [];
      cleanups.push(() => Promise.all(sessions.map((s) => s.close())));
      const staged: Array<Promise<unknown>> = [];
      const stage = (promise: Promise<unknown>) => {
        const tracked = { settled: false };
        staged.push(
          promise.then(
            () => void (tracked.settled = true),
            (error: unknown) => {
              tracked.settled = true;
              tally.add(error, 'in flight at the fault: ');
            },
          ),
        );
        return tracked;
      };

      // 1. A claim held on w0's dedicated connection (its computation parked at the gate), w1 and w2 waiting for it.
      await w0.call('invalidate', GATED);
      await w0.call('hold', GATED);
      const since = await databaseClock(sql);
      stage(w0.call('lookup', GATED));
      await waitFor(async () => (await w0.call<number>('waiting', GATED)) === 1, 20_000, 'w0 to compute the gated module');
      await waitFor(() => claimHeld(sql), 10_000, "w0's claim");
      stage(w1.call('lookup', GATED));
      stage(w2.call('lookup', GATED));
      await waitForClaimAttempts(sql, ['mc-storm-1', 'mc-storm-2'], since, 'w1 and w2 to find the claim taken');

      // 2. Strong acknowledgements parked: the peers' rows locked, an invalidation from each process
      //    commits and waits for the others' acknowledgements, which wait for the rows.
      const peers = await openSession(dbUrl, 'mc-storm-peers-lock');
      sessions.push(peers);
      await peers.query(`BEGIN`);
      await peers.query(`SELECT id FROM module_cache_peers FOR UPDATE`);
      const ackWaits = [
        stage(w0.call('invalidate', moduleUrl(REALM, 0))),
        stage(w1.call('invalidate', moduleUrl(REALM, 3))),
        stage(w2.call('invalidate', moduleUrl(REALM, 9))),
      ];
      await waitFor(
        async () => (await lockWaiters(sql, WAITING.acknowledgements)) >= 3,
        15_000,
        'an acknowledgement of each process parked',
      );

      // 3. The fence lock held exclusively: invalidations (exclusive) and persists (shared) park inside the database.
      const fence = await openSession(dbUrl, 'mc-storm-fence-lock');
      sessions.push(fence);
      await fence.query(FENCE_LOCK);
      stage(w0.call('invalidate', moduleUrl(REALM, 2)));
      stage(w1.call('invalidate', moduleUrl(REALM, 5)));
      stage(w2.call('invalidate', moduleUrl(REALM, 11)));
      await waitFor(
        async () => (await lockWaiters(sql, WAITING.invalidations)) >= 3,
        15_000,
        'an invalidation of each process parked at the fence',
      );
      // m0's fan-out left every module but the gated one cold: their computations' persists park.
      for (const w of workers) stage(w.call('lookupAll', LOOP_URLS));
      await waitFor(async () => (await lockWaiters(sql, WAITING.persists)) >= 3, 15_000, 'persists parked at the fence');

      // 4. The truth table locked: the sources' own pools park (a new scope is a cold key for every module).
      const truth = await openSession(dbUrl, 'mc-storm-truth-lock');
      sessions.push(truth);
      await truth.query(`BEGIN`);
      await truth.query(`LOCK TABLE truth IN ACCESS EXCLUSIVE MODE`);
      workers.forEach((w, i) => stage(w.call('lookup', moduleUrl(REALM, 1), `storm-${round}-${i}`)));
      await waitFor(
        async () => (await lockWaiters(sql, WAITING.truthReads)) >= 3,
        15_000,
        "each process's source parked on the truth table",
      );

      // 5. What is in flight at the fault, then the immediate shutdown.
      const counts = Object.fromEntries(
        await Promise.all(Object.entries(WAITING).map(async ([kind, condition]) => [kind, await lockWaiters(sql, condition)] as const)),
      );
      const pendingAckWaits = ackWaits.filter((t) => !t.settled).length;
      const claim = await claimHeld(sql);
      const states = await listenerStates(workers);
      inFlight.push(
        `round ${round + 1}: ${JSON.stringify({ ...counts, invalidationsAwaitingAcks: pendingAckWaits, claimHeld: claim, listeners: states })}`,
      );
      process.stdout.write(`[restart-storm] immediate shutdown with in flight ${inFlight.at(-1)}\n`);
      expect(liveness.exits).toEqual([]);
      await pg.pause({ immediate: true });
      await w0.call('release', GATED).catch(() => undefined);
      await Promise.all(sessions.map((s) => s.close()));
      await pg.resume();

      // 6. Recovery: every process alive, listening, and looking up every module again.
      recoveries.push(await awaitRecovery(workers, URLS, liveness));
      await liveness.alive(within(Promise.all(staged), 60_000, 'the operations in flight at the fault to settle'));
      expect(await errorRows(sql)).toEqual([]);
      expect(liveness.exits).toEqual([]);
      await liveness.alive(waitFor(async () => (await livePeers()) === 3, 30_000, 'all three members again'));
    }

    loops.stop();
    const { lookups, invalidations } = await liveness.alive(within(loops.done, 60_000, 'the loops to stop'));
    // Quiet: invalidate every module once more (a writer's invalidation may have failed during an
    // outage after its truth update committed), each resolving once every peer applied it.
    for (const [i, u] of URLS.entries()) await liveness.alive(workers[i % workers.length].call('invalidate', u));
    const serves = await liveness.alive(staleServes(workers, sql, URLS));
    const stale = await staleRows(sql);
    const errors = await errorRows(sql);
    const states = await listenerStates(workers);

    process.stdout.write(`[restart-storm] in flight at the faults: ${inFlight.join('; ')}\n`);
    process.stdout.write(
      `[restart-storm] ${workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null).length} processes alive, ` +
        `recovered in ${recoveries.map((ms) => ms.toFixed(0)).join(' ms / ')} ms, ${lookups} loop lookups + ${invalidations} loop invalidations, ` +
        `outage errors by kind ${JSON.stringify(tally.byKind())}, stale rows ${stale.length}, stale serves ${serves.length}\n`,
    );

    expect(liveness.allAlive()).toBe(true);
    expect(liveness.exits).toEqual([]);
    expect(states).toEqual(['listening', 'listening', 'listening']);
    expect(errors).toEqual([]);
    expect(stale).toEqual([]);
    expect(serves).toEqual([]);
  }, 180_000);
});
