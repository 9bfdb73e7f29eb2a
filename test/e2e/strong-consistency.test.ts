import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleCacheEvent } from '../../src';
import { migrate } from '../support/app';
import { backendPid, signalsBackends } from '../support/backends';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { waitFor } from '../support/wait';
import { spawnWorker, TRUTH_SQL, type WorkerHandle } from '../processes/harness';

/**
 * `consistency: 'strong'` with real processes: once invalidate() resolves, no process anywhere
 * serves the old entry; a peer that cannot hear is waited for at most its lease, and by then it
 * has stopped trusting its memory; a killed peer stops being waited for; a clean shutdown leaves.
 */
const REALM = 'https://example.test/strong/';
const url = (n: string) => `${REALM}${n}.ts`;
const LEASE_MS = 6_000;

interface Entry {
  definitions: { value: { version: number } };
}

let db: TestDatabase;
let invalidator: WorkerHandle;
const peers: WorkerHandle[] = [];
const thaw: number[] = [];

async function strongWorker(name: string): Promise<WorkerHandle> {
  return spawnWorker(name, db.url, {
    realms: [REALM],
    consistency: 'strong',
    leaseMs: LEASE_MS,
    listener: { applicationName: `mc-strong-${name}`, heartbeat: { intervalMs: 1_000, timeoutMs: 1_000 } },
  });
}

const version = async (w: WorkerHandle, n: string) => (await w.call<Entry>('lookup', url(n))).definitions.value.version;

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  await db.query(TRUTH_SQL);
  await db.query(`INSERT INTO truth (url) SELECT $1 || 'm' || i || '.ts' FROM generate_series(0, 49) i`, [REALM]);
  invalidator = await strongWorker('w0');
  peers.push(...(await Promise.all(Array.from({ length: 8 }, (_, i) => strongWorker(`p${i + 1}`)))));
  // Every peer has joined (its lease row exists) before the rounds start.
  await waitFor(async () => (await db.query(`SELECT 1 FROM module_cache_peers`)).length === 9, 30_000, 'nine members');
}, 180_000);

afterAll(async () => {
  thaw.splice(0).forEach((pid) => process.kill(pid, 'SIGCONT'));
  await Promise.all([invalidator, ...peers].filter(Boolean).map((w) => w.stop()));
  await db?.drop();
});

describe("consistency: 'strong' (1 + 8 processes)", () => {
  it('after invalidate() resolves, no peer serves the old version: many rounds, all peers reading at once', async (ctx) => {
    if (!(await signalsBackends(db))) return ctx.skip();
    const listeners = await Promise.all(peers.map((_, i) => backendPid(db, `mc-strong-p${i + 1}`)));
    let reads = 0;
    let stale = 0;
    const rounds = 30;
    for (let round = 0; round < rounds; round++) {
      const n = `m${round % 10}`;
      const before = await version(invalidator, n);
      // Warm every peer: each now holds the current version in memory.
      await Promise.all(peers.map((p) => p.call('lookup', url(n))));
      await db.query(`UPDATE truth SET version = version + 1 WHERE url = $1`, [url(n)]);
      // Every other round one peer hears late (its listener stalls for 300 ms, well within a heartbeat):
      // without waiting for its acknowledgement, that peer would answer from memory with the old version.
      const slow = round % 2 === 0 ? listeners[(round / 2) % listeners.length] : undefined;
      if (slow) process.kill(slow, 'SIGSTOP');
      const resume = slow ? setTimeout(() => process.kill(slow, 'SIGCONT'), 300) : undefined;
      await invalidator.call('invalidate', url(n));
      clearTimeout(resume);
      if (slow) process.kill(slow, 'SIGCONT');
      const seen = await Promise.all(peers.map((p) => version(p, n)));
      reads += seen.length;
      stale += seen.filter((v) => v !== before + 1).length;
    }
    const events = (await invalidator.call<ModuleCacheEvent[]>('events')).filter((e) => e.type === 'invalidated');
    const waited = events.map((e) => (e.type === 'invalidated' ? (e.acknowledgements?.waitedMs ?? 0) : 0)).sort((a, b) => a - b);
    process.stdout.write(
      `[strong] ${rounds} rounds x 8 peers: ${reads} reads right after invalidate() resolved, stale reads: ${stale}; ` +
        `acknowledgement wait p50 ${waited[Math.floor(waited.length / 2)]?.toFixed(1)} ms\n`,
    );
    expect(stale).toBe(0);
    expect(events.every((e) => e.type === 'invalidated' && e.acknowledgements?.acknowledged === 8)).toBe(true);
  }, 180_000);

  it('a peer whose listener is frozen for good is waited for at most its lease, then serves the new version from the table', async (ctx) => {
    if (!(await signalsBackends(db))) return ctx.skip();
    const [deaf] = peers;
    expect(await version(deaf, 'm20')).toBe(1);
    const pid = await backendPid(db, 'mc-strong-p1');
    process.kill(pid, 'SIGSTOP');
    thaw.push(pid);
    await db.query(`UPDATE truth SET version = 2 WHERE url = $1`, [url('m20')]);
    const started = performance.now();
    await invalidator.call('invalidate', url('m20'));
    const waited = performance.now() - started;
    process.stdout.write(
      `[strong] invalidate() with a frozen peer resolved after ${(waited / 1000).toFixed(1)} s (lease ${LEASE_MS / 1000} s)\n`,
    );
    // Not a latency assertion: "at most a lease", with room for a loaded machine.
    expect(waited).toBeLessThan(LEASE_MS * 2);
    // By the time the invalidation gave up on it, the deaf peer had stopped trusting its memory.
    expect(await version(deaf, 'm20')).toBe(2);
    // Either its lease ran out, or its heartbeat replaced the deaf connection and it joined again (acknowledging by joining).
    const [event] = (await invalidator.call<ModuleCacheEvent[]>('events')).filter((e) => e.type === 'invalidated');
    const acks = event.type === 'invalidated' ? event.acknowledgements : undefined;
    expect((acks?.acknowledged ?? 0) + (acks?.expired ?? 0)).toBe(8);
  }, 60_000);

  // Any role that can connect may NOTIFY on the channel: a sync marker is a claim about the
  // future ("invalidation S is committed"), and a peer that believed a forged one would
  // acknowledge S before it had applied it, letting S's invalidator resolve too early.
  it('a forged sync marker, with or without a token, does not make a peer acknowledge an invalidation it has not applied', async () => {
    const [{ seq }] = await db.query<{ seq: string }>(`SELECT committed_seq::text AS seq FROM module_cache_fence`);
    const future = (BigInt(seq) + 1000n).toString();
    const forger = '00000000-0000-4000-8000-000000000000';
    await db.query(`SELECT pg_notify('module_cache_invalidated', $1)`, [JSON.stringify({ k: 'sync', q: future, o: forger })]);
    await db.query(`SELECT pg_notify('module_cache_invalidated', $1)`, [
      JSON.stringify({ k: 'sync', q: future, o: forger, t: '5b0c5e8e-7f4a-4c1e-9a59-1c7e0e3f2a10' }),
    ]);
    // Genuine: resolves once every peer acknowledged it, so every peer has handled the forgeries before.
    await invalidator.call('invalidate', url('m29'));
    const [{ committed, acked }] = await db.query<{ committed: string; acked: string }>(
      `SELECT f.committed_seq::text AS committed, max(p.acked_seq)::text AS acked FROM module_cache_fence f, module_cache_peers p GROUP BY 1`,
    );
    expect(BigInt(acked)).toBeLessThanOrEqual(BigInt(committed));
  }, 60_000);

  it('a killed peer stops being waited for once its lease ends; a stopped one leaves at once', async () => {
    const victim = peers.pop()!;
    victim.child.kill('SIGKILL');
    await victim.exited;
    await invalidator.call('invalidate', url('m30')); // waits for the victim's lease at most once
    await invalidator.call('events');
    await invalidator.call('invalidate', url('m31'));
    const [later] = (await invalidator.call<ModuleCacheEvent[]>('events')).filter((e) => e.type === 'invalidated');
    expect(later).toMatchObject({ acknowledgements: { expired: 0 } });

    const leaving = peers.pop()!;
    const members = async () =>
      Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM module_cache_peers WHERE lease_expires_at > now()`))[0].n);
    const before = await members();
    expect(await leaving.stop()).toBe(0);
    expect(await members()).toBe(before - 1);
  }, 60_000);
});
