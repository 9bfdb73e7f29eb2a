/**
 * `consistency: 'strong'` against eventual, same run: invalidate() call duration (worker's
 * `timedInvalidate`, wall clock inside the process) with 1 invalidator + 8 peers, first 9
 * eventual worker processes, then (the eventual ones stopped) 9 strong ones. A raw pg client in
 * this process LISTENs on the invalidation and acknowledgement channels and stamps every
 * notification, so a strong invalidate() splits into: its commit reaching listeners, the sync
 * marker, the 8 acknowledgements, and what follows the last one. Baselines, same run: raw
 * one-way NOTIFY, and the raw round trip strong mode is made of: one NOTIFY out, 8 raw listeners
 * each NOTIFY an ack back, wait for all 8 (bare, and with the durable writes ours must make).
 */
import { TRUTH_SQL, type WorkerHandle } from '../test/processes/harness';
import { MODULE_CACHE_ACKED_CHANNEL, MODULE_CACHE_INVALIDATED_CHANNEL } from '../src/module-cache.constants';
import type { ModuleCacheEvent } from '../src';
import {
  benchClient,
  benchDatabase,
  benchWorkers,
  clockOffset,
  goal,
  ms,
  progress,
  rawNotifyLatency,
  REALM,
  runBench,
  sleep,
  summarize,
  times,
  wallClock,
  type BenchDatabase,
  type Summary,
} from './support';

const PEERS = 8;
const SAMPLES = 200;
const WARMUP = 20;
const CONSUMER_SAMPLES = 40;
/** Pause after each invalidation, as invalidation-latency.ts: invalidations never queue. */
const GAP_MS = 3;
/**
 * Shorter than the defaults (leaseMs 10 s, heartbeat 2 s + 2 s), the shortest valid pair with a
 * 1 s heartbeat: a peer that fails to acknowledge costs at most this much per invalidation.
 */
const LEASE_MS = 3_000;
const STRONG_HEARTBEAT = { intervalMs: 1_000, timeoutMs: 1_000 };

type Mode = 'eventual' | 'strong';

interface Call {
  url: string;
  start: number;
  end: number;
}

interface Seen {
  at: number;
  channel: string;
  payload: string;
}

interface Timed {
  type: string;
  at: number;
  url?: string;
  urls?: string[];
}

type Invalidated = Extract<ModuleCacheEvent, { type: 'invalidated' }>;

/** Per invalidation, in the invalidator's clock (NaN where the observer did not see that step). */
interface Steps {
  duration: number;
  /** call start → the invalidation's NOTIFY reached the observer (its commit + delivery) */
  committed: number;
  /** → the sync marker reached the observer (strong) */
  sync: number;
  /** → first / last (8th) acknowledgement reached the observer (strong) */
  firstAck: number;
  lastAck: number;
  acks: number;
  /** call start → the last ack reached the invalidator's own listener (its stamp, in its process), and how many did during the call */
  heardLastAck: number;
  heard: number;
  /** call start → the first / last peer's listener had the sync marker (strong; the peer's next notification after it applied the invalidation) */
  peerSyncFirst: number;
  peerSyncLast: number;
  /** call start → the last of the 8 peers emitted remote-invalidated */
  allApplied: number;
}

/** A raw pg client LISTENing on both channels: every notification, stamped on arrival. */
async function observer(url: string): Promise<{ drain(): Seen[] }> {
  const client = await benchClient(url, 'mc-bench-strong-observer');
  let seen: Seen[] = [];
  client.on('notification', (n) => seen.push({ at: wallClock(), channel: n.channel, payload: n.payload ?? '' }));
  await client.query(`LISTEN ${MODULE_CACHE_INVALIDATED_CHANNEL}`);
  await client.query(`LISTEN ${MODULE_CACHE_ACKED_CHANNEL}`);
  return {
    drain: () => {
      const out = seen;
      seen = [];
      return out;
    },
  };
}

const parse = (payload: string): { k?: string; m?: string[]; q?: string; o?: string } => {
  try {
    return JSON.parse(payload) as { k?: string; m?: string[]; q?: string; o?: string };
  } catch {
    return {};
  }
};

/** Splits each call by what the observer saw (observer clock + offset = invalidator clock) and when the peers applied it. */
function steps(calls: Call[], seen: Seen[], offset: number, peerEvents: Timed[][], own: Timed[]): Steps[] {
  const invalidations = new Map<string, { at: number; origin?: string }>();
  const syncs: Array<{ at: number; seq: string; origin?: string }> = [];
  const acks = new Map<string, number[]>();
  for (const s of seen) {
    const at = s.at + offset;
    if (s.channel === MODULE_CACHE_ACKED_CHANNEL) {
      if (!acks.has(s.payload)) acks.set(s.payload, []);
      acks.get(s.payload)!.push(at);
      continue;
    }
    const p = parse(s.payload);
    if (p.k === 'module' && Array.isArray(p.m)) for (const u of p.m) if (!invalidations.has(u)) invalidations.set(u, { at, origin: p.o });
    if (p.k === 'sync' && typeof p.q === 'string') syncs.push({ at, seq: p.q, origin: p.o });
  }
  const applied = peerEvents.map((events) => {
    const first = new Map<string, number>();
    for (const e of events) if (e.type === 'remote-invalidated') for (const u of e.urls ?? []) if (!first.has(u)) first.set(u, e.at);
    return first;
  });
  const onChannel = peerEvents.map((events) =>
    events.filter((e) => e.type === 'raw-notification' && e.url === MODULE_CACHE_INVALIDATED_CHANNEL).map((e) => e.at),
  );
  const ownAcks = own.filter((e) => e.type === 'raw-notification' && e.url === MODULE_CACHE_ACKED_CHANNEL).map((e) => e.at);
  return calls.map(({ url, start, end }) => {
    const inv = invalidations.get(url);
    const sync = inv ? syncs.find((s) => s.at >= inv.at && s.origin === inv.origin && s.at <= end + 1) : undefined;
    const ackTimes = sync ? (acks.get(sync.seq) ?? []).sort((a, b) => a - b) : [];
    const peersAt = applied.map((m) => m.get(url));
    const heard = ownAcks.filter((at) => at >= start && at <= end);
    // The peer's raw stamp nearest its remote-invalidated event is the invalidation's own notification; the next one is the sync
    // marker (a heartbeat probe in between would be taken for it: rare, and medians shrug it off).
    const peerSync = peersAt.map((a, i) => {
      if (a === undefined) return undefined;
      const stamps = onChannel[i];
      let own = -1;
      for (let k = 0; k < stamps.length; k++) if (own < 0 || Math.abs(stamps[k] - a) < Math.abs(stamps[own] - a)) own = k;
      const next = own >= 0 ? stamps[own + 1] : undefined;
      return next !== undefined && next <= end ? next : undefined;
    });
    const syncAt = finite(peerSync.map((a) => a ?? NaN));
    return {
      duration: end - start,
      committed: inv ? inv.at - start : NaN,
      sync: sync ? sync.at - start : NaN,
      firstAck: ackTimes.length ? ackTimes[0] - start : NaN,
      lastAck: ackTimes.length ? ackTimes[ackTimes.length - 1] - start : NaN,
      acks: ackTimes.length,
      heardLastAck: heard.length ? heard[heard.length - 1] - start : NaN,
      heard: heard.length,
      peerSyncFirst: syncAt.length === PEERS ? Math.min(...syncAt) - start : NaN,
      peerSyncLast: syncAt.length === PEERS ? Math.max(...syncAt) - start : NaN,
      allApplied: peersAt.every((a) => a !== undefined) ? Math.max(...(peersAt as number[])) - start : NaN,
    };
  });
}

const finite = (values: number[]): number[] => values.filter((v) => Number.isFinite(v));
const p50 = (values: number[]): number => (finite(values).length ? summarize(finite(values)).p50 : NaN);

/** One-at-a-time timedInvalidate() calls in `invalidator`, GAP_MS apart. */
async function invalidations(invalidator: WorkerHandle, urls: string[], warmup: number): Promise<Call[]> {
  const calls: Call[] = [];
  for (let i = 0; i < urls.length; i++) {
    const call = await invalidator.call<{ start: number; end: number }>('timedInvalidate', urls[i]);
    if (i >= warmup) calls.push({ url: urls[i], ...call });
    await sleep(GAP_MS);
    if (i > 0 && i % 100 === 0) progress(`${i}/${urls.length}`);
  }
  return calls;
}

interface ModeResult {
  plain: Steps[];
  /** Acknowledgement notifications each peer (not the invalidator) received per invalidation. */
  acksPerPeer: number;
  consumers: Steps[];
  events: Invalidated[];
  offset: { offset: number; uncertainty: number };
}

async function runMode(mode: Mode, db: BenchDatabase, observe: { drain(): Seen[] }): Promise<ModeResult> {
  progress(`${mode}: spawning ${PEERS + 1} worker processes (1 invalidator + ${PEERS} peers)`);
  const workers = await benchWorkers(
    PEERS + 1,
    db.url,
    (i) => ({
      realms: [REALM],
      ...(mode === 'strong' ? { consistency: 'strong' as const, leaseMs: LEASE_MS } : {}),
      listener: { applicationName: `mc-bench-${mode}-${i}`, ...(mode === 'strong' ? { heartbeat: STRONG_HEARTBEAT } : {}) },
    }),
    3,
  );
  const [invalidator, ...peers] = workers;
  if (mode === 'strong') {
    const deadline = performance.now() + 30_000;
    for (;;) {
      const [{ n }] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM module_cache_peers WHERE lease_expires_at > now()`);
      if (n === PEERS + 1) break;
      if (performance.now() > deadline) throw new Error(`only ${n} of ${PEERS + 1} strong processes joined within 30 s`);
      await sleep(100);
    }
  }
  const offset = await clockOffset(invalidator);
  const drainAll = async () => {
    observe.drain();
    await Promise.all(workers.map((w) => Promise.all([w.call('timedEvents'), w.call('events')])));
  };
  const collect = async (calls: Call[]) => {
    await sleep(200);
    const peerEvents = await Promise.all(peers.map((p) => p.call<Timed[]>('timedEvents')));
    const own = await invalidator.call<Timed[]>('timedEvents');
    const events = (await invalidator.call<ModuleCacheEvent[]>('events')).filter((e): e is Invalidated => e.type === 'invalidated');
    const ackNotifications = peerEvents.flat().filter((e) => e.type === 'raw-notification' && e.url === MODULE_CACHE_ACKED_CHANNEL).length;
    return { steps: steps(calls, observe.drain(), offset.offset, peerEvents, own), events, ackNotifications };
  };

  await drainAll();
  progress(`${mode}: ${WARMUP} warm-up + ${SAMPLES} invalidations of distinct URLs without rows or consumers, ${GAP_MS} ms apart`);
  const plainUrls = Array.from({ length: WARMUP + SAMPLES }, (_, i) => `${REALM}strong/${mode}/module-${i}.gts`);
  const plain = await collect(await invalidations(invalidator, plainUrls, WARMUP));

  // With a consumer: app-k imports dep-k; invalidate(dep-k) finds app-k and deletes its row (two statements).
  const deps = Array.from({ length: CONSUMER_SAMPLES + 5 }, (_, i) => `${REALM}strong/${mode}/dep-${i}.gts`);
  const apps = deps.map((d) => d.replace('/dep-', '/app-'));
  await db.query(`INSERT INTO truth (url, deps) SELECT a, ARRAY[d] FROM unnest($1::text[], $2::text[]) AS t(a, d)`, [apps, deps]);
  await db.query(`INSERT INTO truth (url) SELECT unnest($1::text[])`, [deps]);
  await invalidator.call('lookupAll', apps);
  await drainAll();
  progress(`${mode}: 5 warm-up + ${CONSUMER_SAMPLES} invalidations of a module with one cached consumer`);
  const consumers = await collect(await invalidations(invalidator, deps, 5));
  const [{ left }] = await db.query<{ left: number }>(
    `SELECT count(*)::int AS left FROM module_cache_entries WHERE url = ANY($1::text[])`,
    [apps],
  );
  if (left !== 0) throw new Error(`${left} consumer rows survived the invalidation of their dependency`);

  progress(`${mode}: stopping the ${PEERS + 1} workers`);
  await Promise.all(workers.map((w) => w.stop()));
  const acksPerPeer = plain.ackNotifications / PEERS / plainUrls.length;
  return { plain: plain.steps, acksPerPeer, consumers: consumers.steps, events: [...plain.events, ...consumers.events], offset };
}

/**
 * The round trip strong mode is built on, with raw pg clients in this process: one NOTIFY out
 * (through `sender`), `peers` listeners each NOTIFY an ack back on receipt, and a listening
 * client waits until it has all of them. `durable`: the ping is one statement that also inserts a
 * row, and each ack one that also updates its row (as the invalidation and module_cache_acknowledge
 * are: both commit a write, so flush WAL).
 */
async function rawAckRoundTrip(url: string, { samples, warmup, durable }: { samples: number; warmup: number; durable: boolean }) {
  const ping = 'module_cache_bench_ping';
  const ack = 'module_cache_bench_ack';
  const sender = await benchClient(url, 'mc-bench-raw-ping');
  const hearer = await benchClient(url, 'mc-bench-raw-acks');
  await hearer.query(`LISTEN ${ack}`);
  if (durable) {
    await sender.query('CREATE TABLE IF NOT EXISTS module_cache_bench_log (id bigserial PRIMARY KEY, payload text NOT NULL)');
    await sender.query('CREATE TABLE IF NOT EXISTS module_cache_bench_peers (id int PRIMARY KEY, acked bigint NOT NULL)');
    await sender.query(
      'INSERT INTO module_cache_bench_peers SELECT i, 0 FROM generate_series(0, $1::int - 1) i ON CONFLICT (id) DO UPDATE SET acked = 0',
      [PEERS],
    );
  }
  const responders = await Promise.all(
    Array.from({ length: PEERS }, async (_, i) => {
      const client = await benchClient(url, `mc-bench-raw-peer-${i}`);
      client.on('notification', (n) => {
        if (n.channel !== ping) return;
        const answer = durable
          ? client.query(
              `WITH a AS (UPDATE module_cache_bench_peers SET acked = greatest(acked, $2::bigint) WHERE id = $1 RETURNING acked)
               SELECT pg_notify($3, acked::text) FROM a`,
              [i, n.payload, ack],
            )
          : client.query('SELECT pg_notify($1, $2)', [ack, n.payload]);
        answer.catch(() => undefined);
      });
      await client.query(`LISTEN ${ping}`);
      return client;
    }),
  );
  let expected = '';
  let count = 0;
  let allIn: ((at: number) => void) | undefined;
  hearer.on('notification', (n) => {
    const at = wallClock();
    if (n.channel === ack && n.payload === expected && ++count === PEERS) allIn?.(at);
  });
  const result: number[] = [];
  for (let i = 0; i < warmup + samples; i++) {
    await sleep(GAP_MS);
    expected = String(i + 1);
    count = 0;
    const arrival = new Promise<number>((resolve) => (allIn = resolve));
    const sent = wallClock();
    const query = durable
      ? sender.query(
          'WITH logged AS (INSERT INTO module_cache_bench_log (payload) VALUES ($2) RETURNING payload) SELECT pg_notify($1, payload) FROM logged',
          [ping, expected],
        )
      : sender.query('SELECT pg_notify($1, $2)', [ping, expected]);
    const at = await arrival;
    await query;
    if (i >= warmup) result.push(at - sent);
  }
  await Promise.all(responders.map((c) => c.query(`UNLISTEN ${ping}`)));
  await hearer.query(`UNLISTEN ${ack}`);
  return result;
}

const both = (s: Summary): string => `${ms(s.p50)} / ${ms(s.p99)}`;

runBench('strong', async () => {
  const db = await benchDatabase();
  await db.query(TRUTH_SQL);
  const observe = await observer(db.url);

  const eventual = await runMode('eventual', db, observe);
  const strong = await runMode('strong', db, observe);

  progress(
    `baselines: raw one-way NOTIFY, and NOTIFY → ${PEERS} raw listeners NOTIFY an ack → all ${PEERS} acks in (bare, durable); ${GAP_MS} ms pauses`,
  );
  const raw = summarize(await rawNotifyLatency(db.url, { samples: SAMPLES, gapMs: GAP_MS }));
  const rawAcks = summarize(await rawAckRoundTrip(db.url, { samples: SAMPLES, warmup: WARMUP, durable: false }));
  const durableAcks = summarize(await rawAckRoundTrip(db.url, { samples: SAMPLES, warmup: WARMUP, durable: true }));

  const ev = summarize(eventual.plain.map((s) => s.duration));
  const st = summarize(strong.plain.map((s) => s.duration));
  const evConsumers = summarize(eventual.consumers.map((s) => s.duration));
  const stConsumers = summarize(strong.consumers.map((s) => s.duration));
  const evApplied = summarize(finite(eventual.plain.map((s) => s.allApplied)));
  const stApplied = summarize(finite(strong.plain.map((s) => s.allApplied)));

  const row = (measure: string, o: number, base: number, what: string, g?: { text: string; limit: number }) => ({
    measure,
    ours: ms(o),
    baseline: `${ms(base)} (${what})`,
    ratio: times(o / base),
    goal: g ? goal(g.text, o / base <= g.limit) : '—',
  });
  const rows = [
    row(`strong invalidate() p50 vs eventual, ${PEERS} peers (no rows, no consumers)`, st.p50, ev.p50, 'eventual invalidate() p50', {
      text: 'p50 ≤ 2×',
      limit: 2,
    }),
    row('strong invalidate() p99 vs eventual', st.p99, ev.p99, 'eventual invalidate() p99'),
    row('eventual invalidate() p50 vs raw one-way NOTIFY', ev.p50, raw.p50, 'raw NOTIFY, same pauses'),
    row(
      `strong invalidate() p50 vs raw NOTIFY → ${PEERS} listeners NOTIFY back → all ${PEERS} acks in`,
      st.p50,
      rawAcks.p50,
      'raw ack round trip',
    ),
    row(
      `strong invalidate() p50 vs the same round trip with durable writes (INSERT+NOTIFY out, UPDATE+NOTIFY acks)`,
      st.p50,
      durableAcks.p50,
      'durable raw ack round trip',
    ),
    row(
      `with one cached consumer (2 statements): strong invalidate() p50 vs eventual`,
      stConsumers.p50,
      evConsumers.p50,
      'eventual, same graph',
    ),
    {
      measure: `call start → all ${PEERS} peers applied it, p50 / p99 (eventual; strong)`,
      ours: `${both(evApplied)}; ${both(stApplied)}`,
      baseline: '—',
      ratio: '—',
      goal: '—',
    },
  ];

  // Where the time goes, from the invalidator's own `invalidated` events (the plain samples, warm-up excluded): the commit part
  // (durationMs − acknowledgements.waitedMs) and the acknowledgement wait, against eventual's durationMs and the raw ack round trip.
  const sampled = (mode: Mode) => {
    const urls = new Set(Array.from({ length: SAMPLES }, (_, i) => `${REALM}strong/${mode}/module-${WARMUP + i}.gts`));
    return (mode === 'strong' ? strong : eventual).events.filter((e) => e.urls.some((u) => urls.has(u)));
  };
  const strongSampled = sampled('strong').filter((e) => e.acknowledgements);
  const commitPart = summarize(strongSampled.map((e) => e.durationMs - e.acknowledgements!.waitedMs));
  const ackWait = summarize(strongSampled.map((e) => e.acknowledgements!.waitedMs));
  const eventualDuration = summarize(sampled('eventual').map((e) => e.durationMs));
  const breakdown = [
    {
      measure: `where the time goes (strong, ${strongSampled.length} invalidated events): commit part p50 (durationMs − acknowledgements.waitedMs) vs eventual durationMs p50`,
      ours: ms(commitPart.p50),
      baseline: `${ms(eventualDuration.p50)} (eventual invalidated.durationMs p50)`,
      ratio: times(commitPart.p50 / eventualDuration.p50),
      goal: '—',
    },
    {
      measure: `where the time goes: acknowledgement wait p50 (acknowledgements.waitedMs) vs raw NOTIFY → ${PEERS} listeners NOTIFY back → all ${PEERS} acks in`,
      ours: ms(ackWait.p50),
      baseline: `${ms(rawAcks.p50)} (raw ack round trip; durable ${ms(durableAcks.p50)})`,
      ratio: `${times(ackWait.p50 / rawAcks.p50)} (${times(ackWait.p50 / durableAcks.p50)} durable)`,
      goal: '—',
    },
  ];
  rows.splice(1, 0, ...breakdown);

  // Where strong mode's time goes: a timeline of medians, each from the call's start, and medians of per-sample differences.
  const sp = strong.plain;
  const at = (pick: (s: Steps) => number, from = sp) => p50(from.map(pick));
  const heardAll = sp.filter((s) => s.heard === PEERS);
  const heardLast = at((s) => s.heardLastAck, heardAll);
  const afterLastAck = at((s) => s.duration - s.heardLastAck, heardAll);
  const ackSpread = at((s) => s.lastAck - s.firstAck);
  const fullyObserved = sp.filter((s) => s.acks === PEERS && Number.isFinite(s.sync)).length;
  const strongEvents = strong.events.filter((e) => e.acknowledgements);
  const waited = summarize(strongEvents.map((e) => e.acknowledgements!.waitedMs));
  const allAcked = strongEvents.filter((e) => e.acknowledgements!.acknowledged === PEERS && e.acknowledgements!.expired === 0).length;
  const slowest = [...sp].sort((a, b) => b.duration - a.duration).slice(0, 3);
  const lateWake = heardAll.filter((s) => s.duration - s.heardLastAck > 20);
  const step = (s: Steps) =>
    `${ms(s.duration)} (commit seen at ${ms(s.committed)}, last of ${s.acks} acks seen at ${ms(s.lastAck)}; ` +
    `the invalidator had heard ${s.heard} acks by ${ms(s.heardLastAck)} and resolved ${ms(s.duration - s.heardLastAck)} later)`;
  const woken = sp.filter((s) => !lateWake.includes(s));
  const stWoken = woken.length ? summarize(woken.map((s) => s.duration)) : undefined;
  const floor = durableAcks.p50;

  return {
    rows,
    summary: [rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]],
    notes: [
      `${PEERS + 1} worker processes per mode (1 invalidator + ${PEERS} peers), the eventual set stopped before the strong set started; ` +
        `${SAMPLES} invalidations of distinct URLs (no rows, no consumers: one statement) after ${WARMUP} warm-up, ${GAP_MS} ms apart; ` +
        `${CONSUMER_SAMPLES} more per mode with one cached consumer each (2 statements: the fan-out found, then deleted); ` +
        `baselines with the same pauses, ${SAMPLES} samples each, after both sets stopped`,
      `strong settings: leaseMs ${LEASE_MS}, heartbeat ${STRONG_HEARTBEAT.intervalMs} + ${STRONG_HEARTBEAT.timeoutMs} ms (defaults 10000 and 2000 + 2000: ` +
        `shorter here only so that a missing acknowledgement costs at most ~${LEASE_MS / 1000} s instead of ~10 s); every process of the strong set strong; ` +
        `all ${PEERS + 1} had joined before the first sample`,
      `strong invalidate() = the invalidation statement, which sends the sync marker after its payloads in the same transaction (committed) + the wait ` +
        `(an awaitedPeers query, then one more per round of acknowledgements heard) until all ${PEERS} peers' acks (UPDATE + NOTIFY each, a commit each) are recorded, ` +
        `then a count of the peers whose lease expired instead`,
      `where a strong invalidate() spends its time, medians from the call's start (the observer is a raw LISTEN client in this process, itself competing ` +
        `for the 2 cores, so its stamps are upper bounds; ${fullyObserved}/${sp.length} samples with the sync marker and all ${PEERS} acks seen): ` +
        `commit seen ${ms(at((s) => s.committed))}, sync marker seen ${ms(at((s) => s.sync))}; the peers' listeners had the sync marker from ` +
        `${ms(at((s) => s.peerSyncFirst))} (first peer) to ${ms(at((s) => s.peerSyncLast))} (last); acks seen from ${ms(at((s) => s.firstAck))} to ` +
        `${ms(at((s) => s.lastAck))} (spread ${ms(ackSpread)}); the invalidator's own listener had the last one at ${ms(heardLast)} ` +
        `(${ms(at((s) => s.heardLastAck - s.lastAck, heardAll))} after the observer) and invalidate() resolved ${ms(afterLastAck)} after that ` +
        `(two more round trips: the awaitedPeers query that finds no one left, then the count of expired peers), ${ms(st.p50)} in all. Per sample: last peer had the sync → last ack seen ` +
        `${ms(at((s) => s.lastAck - s.peerSyncLast))}. Eventual: commit seen ${ms(p50(eventual.plain.map((s) => s.committed)))}, the call ${ms(ev.p50)}`,
      `late resolutions: ${lateWake.length}/${sp.length} strong samples resolved more than 20 ms after their last ack had arrived` +
        (lateWake.length
          ? ` in the invalidator's own process (max ${ms(Math.max(...lateWake.map((s) => s.duration - s.heardLastAck)))}; lease ${LEASE_MS} ms). ` +
            `The wait reads the peers again at once when an acknowledgement arrived during its previous read (a lost wake-up, fixed, used to ` +
            `cost the rest of a lease), so these are the invalidator's process waiting for a core. Without them strong is ${both(stWoken!)} ` +
            `(p50 ${times(stWoken!.p50 / ev.p50)} eventual)`
          : ''),
      ...(st.p50 / ev.p50 > 2
        ? [
            `why the p50 goal is missed: not late resolutions (they only make the tail; p50 without them ${ms(stWoken?.p50 ?? NaN)}) but the serial steps ` +
              `of the timeline above: commit seen → sync marker seen ${ms(at((s) => s.sync - s.committed))} (the same commit: only the observer's wake-up between them), ` +
              `sync seen → the last of ${PEERS} peer processes had it ${ms(at((s) => s.peerSyncLast - s.sync))} (${PEERS} node processes woken on 2 cores, ` +
              `just after they were woken for the invalidation itself), → its ack seen ${ms(at((s) => s.lastAck - s.peerSyncLast))}, ` +
              `→ resolved ${ms(afterLastAck)} after the invalidator heard it`,
          ]
        : []),
      `floor of strong mode on this machine: the durable raw ack round trip (a committed NOTIFY out, ${PEERS} committed acks back), p50 ${ms(floor)}, is already ${times(floor / ev.p50)} ` +
        `the eventual p50${floor / ev.p50 > 2 ? ': the 2× goal is out of reach for this protocol here, not only for this implementation' : ''}`,
      `CPU: all ${PEERS + 1} strong processes LISTEN on the ack channel, so each peer received ${strong.acksPerPeer.toFixed(1)} ack notifications per ` +
        `invalidation it has no use for (${PEERS} peers × that, process wake-ups on 2 cores, per invalidation), while the ${PEERS} acks themselves spread over ${ms(ackSpread)} (p50)`,
      `acknowledgements (invalidated events): ${allAcked}/${strongEvents.length} strong invalidations acknowledged by all ${PEERS} peers with none expired; ` +
        `waitedMs p50 ${ms(waited.p50)}, p99 ${ms(waited.p99)}, max ${ms(waited.max)}`,
      `slowest strong samples: ${slowest.map(step).join('; ')}`,
      `call durations p50 / p99: eventual ${both(ev)}, strong ${both(st)}; with a consumer: eventual ${both(evConsumers)}, strong ${both(stConsumers)}; ` +
        `raw NOTIFY ${both(raw)}, raw ack round trip ${both(rawAcks)}, durable ${both(durableAcks)}`,
      `the raw ack round trip's ${PEERS} responders are pg clients in one process (the strong peers are ${PEERS} processes on this machine's cores)`,
      `clock offset to the bench process (invalidator, IPC ping): eventual ${ms(Math.abs(eventual.offset.offset))} ± ${ms(eventual.offset.uncertainty)}, ` +
        `strong ${ms(Math.abs(strong.offset.offset))} ± ${ms(strong.offset.uncertainty)}`,
    ],
  };
});
