import { randomBytes } from 'node:crypto';
import { filter, firstValueFrom, map } from 'rxjs';
import { Logger } from '@nestjs/common';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ListenerState, RawNotification } from '../../src/connection/dedicated-connection';
import { PgDedicatedConnection, type PgDedicatedConnectionConfig } from '../../src/connection/pg-connection';
import {
  ModuleCacheInvalidationListener,
  type ListenerConfig,
  type ProbeSender,
  type SyncMarker,
} from '../../src/listener/invalidation-listener';
import { encodeInvalidations, type InvalidationMessage } from '../../src/wire/invalidation';
import { encodeWakeUp } from '../../src/wire/wake-up';
import { backendPid, signalsBackends } from '../support/backends';
import { adminQuery, adminUrl, createTestDatabase, withDatabase, type TestDatabase } from '../support/database';
import { freePort } from '../support/embedded-postgres';
import { waitFor } from '../support/wait';

const CHANNEL = 'module_cache_invalidated';
const REALM = 'https://host.example/realm/';
const SECRET = 'listener-test-signing-secret';
/** Far longer than any "prompt" stop may take here: a stop that waited out a backoff would miss it. */
const PROMPT_MS = 10_000;

let db: TestDatabase;
const listeners: ModuleCacheInvalidationListener[] = [];
const frozenPids: number[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});

afterEach(async () => {
  frozenPids.splice(0).forEach((pid) => process.kill(pid, 'SIGCONT'));
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
});

afterAll(async () => {
  await db?.drop();
});

interface Options {
  connection?: PgDedicatedConnectionConfig['connection'];
  reconnect?: PgDedicatedConnectionConfig['reconnect'];
  extraChannels?: string[];
  signingSecret?: string;
  heartbeat?: ListenerConfig['heartbeat'];
  probe?: ProbeSender;
  prefixes?: ListenerConfig['prefixes'];
  controlChannel?: string;
}

/** Probes go out through another connection to the test database: the path peers' NOTIFYs take. */
const probeThroughTheDatabase: ProbeSender = async (channel, payload) => {
  await db.query('SELECT pg_notify($1, $2)', [channel, payload]);
};

/** A listener over its own dedicated connection, plus everything they emitted, recorded for assertions. */
function track(options: Options = {}) {
  const applicationName = `mcl-test-${randomBytes(4).toString('hex')}`;
  const connection = new PgDedicatedConnection({
    connection: options.connection ?? { connectionString: db.url },
    applicationName,
    channels: [CHANNEL, ...(options.controlChannel ? [options.controlChannel] : []), ...(options.extraChannels ?? [])],
    reconnect: options.reconnect ?? { initialDelayMs: 50, maxDelayMs: 400 },
    queryTimeoutMs: 2_000,
  });
  const listener = new ModuleCacheInvalidationListener(
    {
      channel: CHANNEL,
      origin: 'test-origin',
      signingSecret: options.signingSecret,
      // Tests that want heartbeats say so; the rest probe by hand.
      heartbeat: options.heartbeat ?? { intervalMs: 3_600_000, timeoutMs: 5_000 },
      prefixes: options.prefixes,
      controlChannel: options.controlChannel,
    },
    connection,
    options.probe ?? probeThroughTheDatabase,
  );
  listeners.push(listener);
  const seen = {
    messages: [] as InvalidationMessage[],
    syncs: [] as SyncMarker[],
    raw: [] as RawNotification[],
    states: [] as ListenerState[],
    resyncs: 0,
  };
  listener.notifications$.subscribe((m) => seen.messages.push(m));
  listener.syncs$.subscribe((m) => seen.syncs.push(m));
  connection.notifications$
    .pipe(filter((n) => n.channel !== CHANNEL && n.channel !== options.controlChannel))
    .subscribe((r) => seen.raw.push(r));
  listener.state$.subscribe((s) => seen.states.push(s));
  listener.resync$.subscribe(() => seen.resyncs++);
  return { listener, connection, seen, applicationName };
}

async function started(options: Options = {}) {
  const t = track(options);
  await t.listener.onModuleInit();
  expect(t.listener.state).toBe('listening');
  return t;
}

/** Resolves with `work`'s result, or fails if it takes PROMPT_MS. */
async function prompt<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took over ${PROMPT_MS} ms`)), PROMPT_MS)),
  );
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

const notify = (payload: string, channel = CHANNEL) => db.query('SELECT pg_notify($1, $2)', [channel, payload]);

async function backendsNamed(prefix: string): Promise<number> {
  const rows = await adminQuery<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE $1', [`${prefix}%`]);
  return Number(rows[0].n);
}

async function terminateListener(applicationName: string, datname = db.name): Promise<void> {
  const rows = await db.query('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND datname = $2', [
    applicationName,
    datname,
  ]);
  expect(rows).toEqual([{ ok: true }]);
}

describe('ModuleCacheInvalidationListener against a real Postgres', () => {
  it('starts listening, emits resync$ once, and proves delivery with a probe sent through another connection', async () => {
    const { listener, seen, applicationName } = await started();
    expect(seen.states).toEqual(['closed', 'connecting', 'listening']);
    expect(seen.resyncs).toBe(1);
    expect(listener.probe).toMatchObject({ ok: true });
    expect(listener.probe.at).toBeInstanceOf(Date);
    expect(listener.isTrusted()).toBe(true);
    expect(listener.stats()).toEqual({ received: 0, rejected: 0, covered: 0, reconnects: 0 });
    expect(await listener.selfProbe()).toBe(true);
    // One dedicated connection, nothing else.
    expect(await backendsNamed(applicationName)).toBe(1);
  });

  it('delivers hand-sent payloads of every shape, parsed', async () => {
    const { listener, seen } = await started();
    await notify(`{"k":"module","r":"${REALM}","m":["${REALM}a.gts","${REALM}日本/😀.ts"],"o":"peer"}`);
    await notify(`{"k":"realm","r":"${REALM}","o":"peer"}`);
    await notify('{"k":"global","o":"test-origin"}'); // own echo: still emitted, the consumer ignores it
    await waitFor(() => seen.messages.length === 3, 5_000, 'three notifications');
    expect(seen.messages).toEqual([
      { kind: 'module', realm: REALM, urls: [`${REALM}a.gts`, `${REALM}日本/😀.ts`], origin: 'peer' },
      { kind: 'realm', realm: REALM, origin: 'peer' },
      { kind: 'global', origin: 'test-origin' },
    ]);
    expect(listener.stats()).toMatchObject({ received: 3, rejected: 0 });
  });

  it('receives a 1,000-URL invalidation sent as a handful of batched payloads in one transaction', async () => {
    const { seen } = await started({ signingSecret: SECRET });
    const urls = Array.from({ length: 1000 }, (_, i) => `${REALM}cards/card-${i}.gts`);
    const payloads = encodeInvalidations({ kind: 'module', realm: REALM, urls }, { origin: 'peer', signingSecret: SECRET });
    expect(payloads.length).toBeLessThan(10);
    await db.query(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, [CHANNEL, payloads]);
    await waitFor(() => seen.messages.length === payloads.length, 5_000, 'all batches');
    expect(seen.messages.flatMap((m) => (m.kind === 'module' ? m.urls : []))).toEqual(urls);
  });

  it('counts and logs malformed, forged and oversized payloads without breaking the stream', async () => {
    const { listener, seen } = await started({ signingSecret: SECRET });
    const [validSigned] = encodeInvalidations({ kind: 'realm', realm: REALM }, { origin: 'peer', signingSecret: SECRET });
    const [unsigned] = encodeInvalidations({ kind: 'realm', realm: REALM }, { origin: 'peer' });
    const [forged] = encodeInvalidations({ kind: 'global' }, { origin: 'peer', signingSecret: 'an-attacker-guessed-secret' });
    const tampered = JSON.stringify({ ...JSON.parse(validSigned), r: 'https://host.example/other/' });
    const bad = [
      'not json at all',
      '{"k":"global"}',
      '{"k":"module","r":"x","m":[],"o":"p"}',
      unsigned,
      forged,
      tampered,
      `"${'x'.repeat(7990)}"`,
    ];
    for (const payload of bad) await notify(payload);
    // Postgres itself refuses 8000 bytes or more, so an oversized payload never reaches a listener.
    await expect(notify(`{"k":"global","o":"${'é'.repeat(4000)}"}`)).rejects.toThrow(/payload string too long/);
    await notify(validSigned);
    await waitFor(() => seen.messages.length === 1, 5_000, 'the valid payload after the bad ones');
    expect(seen.messages).toEqual([{ kind: 'realm', realm: REALM, origin: 'peer' }]);
    expect(listener.stats()).toEqual({
      received: 1,
      rejected: bad.length,
      covered: 0,
      reconnects: 0,
      lastRejectReason: 'payload is not a JSON object',
    });
    expect(listener.state).toBe('listening');
  });

  it("resolves the reference's prefix-form realms and URLs through `prefixes`; an unmapped prefix is counted, warned about once, never thrown", async () => {
    const warn = vi.spyOn(Logger.prototype, 'warn');
    try {
      const { listener, seen } = await started({ prefixes: { '@cardstack/base/': REALM } });
      const urls = ['@cardstack/base/card-api.gts', '@cardstack/base/string.gts'];
      // The reference's listener test's exact shapes, sent raw.
      await notify(JSON.stringify({ k: 'module', r: '@cardstack/base/', m: urls }));
      await notify(JSON.stringify({ k: 'realm', r: '@cardstack/base/' }));
      for (let i = 0; i < 5; i++)
        await notify(JSON.stringify({ k: 'module', r: '@cardstack/catalog/', m: [`@cardstack/catalog/${i}.gts`] }));
      await notify(JSON.stringify({ k: 'realm', r: '@cardstack/catalog/' }));
      await notify(JSON.stringify({ k: 'module', r: REALM, m: ['@elsewhere/x/y.gts'] }));
      await notify('{"k":"global"}');
      await waitFor(() => seen.messages.length === 3, 5_000, 'the global message after the unmapped ones');
      expect(seen.messages).toEqual([
        { kind: 'module', realm: REALM, urls: [`${REALM}card-api.gts`, `${REALM}string.gts`] },
        { kind: 'realm', realm: REALM },
        { kind: 'global' },
      ]);
      expect(listener.stats()).toEqual({
        received: 3,
        rejected: 7,
        covered: 0,
        reconnects: 0,
        lastRejectReason: 'no configured prefix maps "@elsewhere/x/"',
      });
      const unmapped = warn.mock.calls.map(([m]) => String(m)).filter((m) => m.includes('no entry of the prefixes option maps it'));
      expect(unmapped).toHaveLength(2);
      expect(unmapped[0]).toContain('"@cardstack/catalog/"');
      expect(unmapped[1]).toContain('"@elsewhere/x/"');
      expect(listener.state).toBe('listening');
    } finally {
      warn.mockRestore();
    }
  });

  it("with a control channel ('seed'): probes go there, probes and sync markers are heard on both, invalidations only on the shared one", async () => {
    const CONTROL = `${CHANNEL}__control`;
    const sent: string[] = [];
    const { listener, seen } = await started({
      controlChannel: CONTROL,
      probe: async (channel, payload) => {
        sent.push(channel);
        await probeThroughTheDatabase(channel, payload);
      },
    });
    expect(await listener.selfProbe()).toBe(true);
    expect(sent).toEqual([CONTROL, CONTROL]);
    const token = '5b0c5e8e-7f4a-4c1e-9a59-1c7e0e3f2a10';
    await notify(JSON.stringify({ k: 'sync', q: '7', o: 'peer', t: token }), CONTROL);
    await notify(JSON.stringify({ k: 'sync', q: '8', o: 'own-format-peer', t: token }));
    await notify(JSON.stringify({ k: 'probe', o: 'peer', n: 'ab' }), CONTROL);
    await notify(JSON.stringify({ k: 'realm', r: REALM }), CONTROL);
    await notify(JSON.stringify({ k: 'realm', r: REALM }));
    await waitFor(() => seen.messages.length === 1, 5_000, 'the invalidation on the shared channel');
    expect(seen.syncs).toEqual([
      { seq: '7', origin: 'peer', token },
      { seq: '8', origin: 'own-format-peer', token },
    ]);
    expect(seen.messages).toEqual([{ kind: 'realm', realm: REALM }]);
    expect(listener.stats()).toEqual({
      received: 1,
      rejected: 1,
      covered: 0,
      reconnects: 0,
      lastRejectReason: 'not a probe or a sync marker (the control channel carries nothing else)',
    });
  });

  it('does not count probes (its own or a peer’s) as rejected', async () => {
    const a = await started();
    const b = await started();
    expect(await a.listener.selfProbe()).toBe(true);
    await notify('{"k":"global","o":"marker"}');
    await waitFor(() => a.seen.messages.length === 1 && b.seen.messages.length === 1, 5_000, 'marker on both');
    expect(a.listener.stats().rejected).toBe(0);
    expect(b.listener.stats().rejected).toBe(0);
  });

  it('passes the other channels of its connection through raw and unparsed', async () => {
    const { listener, seen } = await started({ extraChannels: ['module_cache_computed'] });
    await notify('anything goes', 'module_cache_computed');
    await notify('{"k":"global","o":"p"}');
    await waitFor(() => seen.raw.length === 1 && seen.messages.length === 1, 5_000, 'raw and parsed');
    expect(seen.raw).toEqual([{ channel: 'module_cache_computed', payload: 'anything goes' }]);
    expect(listener.stats()).toMatchObject({ received: 1, rejected: 0 });
  });

  it('keeps delivering to others when one consumer’s pipeline throws', async () => {
    const { listener, seen } = await started();
    const failures: unknown[] = [];
    listener.notifications$
      .pipe(
        map(() => {
          throw new Error('consumer bug');
        }),
      )
      .subscribe({ error: (e) => failures.push(e) });
    await notify('{"k":"global","o":"one"}');
    await notify('{"k":"global","o":"two"}');
    await waitFor(() => seen.messages.length === 2, 5_000, 'both messages');
    expect(failures).toHaveLength(1);
  });

  it('reconnects after its backend is terminated: LISTEN again, resync$ again, delivery resumes', async () => {
    const { listener, seen, applicationName } = await started();
    await terminateListener(applicationName);
    await waitFor(() => seen.resyncs === 2, 10_000, 'a second resync');
    expect(listener.state).toBe('listening');
    expect(seen.states).toEqual(['closed', 'connecting', 'listening', 'reconnecting', 'listening']);
    expect(listener.stats().reconnects).toBe(1);
    await notify('{"k":"global","o":"after-recovery"}');
    await waitFor(() => seen.messages.length === 1, 5_000, 'a notification after recovery');
    expect(seen.messages[0]).toEqual({ kind: 'global', origin: 'after-recovery' });
    expect(await backendsNamed(applicationName)).toBe(1);
  });

  it('survives repeated terminations', async () => {
    const { listener, seen, applicationName } = await started();
    for (let i = 2; i <= 4; i++) {
      await terminateListener(applicationName);
      await waitFor(() => seen.resyncs === i, 10_000, `resync #${i}`);
    }
    expect(listener.stats().reconnects).toBe(3);
    await notify('{"k":"global","o":"p"}');
    await waitFor(() => seen.messages.length === 1, 5_000, 'delivery');
  });

  it('does not block startup when the first connect fails, and connects (and probes) once it can', async () => {
    const name = `mc_test_late_${randomBytes(4).toString('hex')}`;
    const late = withDatabase(adminUrl(), name);
    const t = track({
      connection: { connectionString: late },
      probe: async (channel, payload) => void (await adminQuery('SELECT pg_notify($1, $2)', [channel, payload], late)),
    });
    try {
      await t.listener.onModuleInit(); // the database does not exist yet
      expect(t.listener.state).toBe('reconnecting');
      expect(t.seen.resyncs).toBe(0);
      await adminQuery(`CREATE DATABASE ${name}`);
      await waitFor(() => t.listener.state === 'listening' && t.listener.probe.ok === true, 10_000, 'late connection and probe');
      expect(t.seen.resyncs).toBe(1);
      await t.listener.stop();
    } finally {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });

  it('stops promptly mid-backoff against a closed port', async () => {
    const port = await freePort();
    const t = track({
      connection: { host: '127.0.0.1', port, user: 'nobody', database: 'none' },
      reconnect: { initialDelayMs: 60_000, maxDelayMs: 120_000 },
    });
    await prompt(t.listener.onModuleInit(), 'a start whose connect fails');
    expect(t.listener.state).toBe('reconnecting');
    expect(t.listener.isTrusted()).toBe(false);
    expect(await t.listener.selfProbe()).toBe(false);
    expect(t.listener.probe).toMatchObject({ ok: false, reason: expect.stringMatching(/listener is reconnecting/) });
    await prompt(t.listener.onApplicationShutdown(), 'a stop mid-backoff');
    expect(t.seen.states.at(-1)).toBe('closed');
  });

  it('stops promptly right after its connection was killed, leaving no connection open', async () => {
    const { listener, seen, applicationName } = await started({ reconnect: { initialDelayMs: 60_000, maxDelayMs: 120_000 } });
    await terminateListener(applicationName);
    await waitFor(() => listener.state === 'reconnecting', 5_000, 'reconnecting');
    await prompt(listener.stop(), 'a stop right after the connection was killed');
    expect(seen.states.at(-1)).toBe('closed');
    await waitFor(async () => (await backendsNamed(applicationName)) === 0, 5_000, 'no backend left');
  });

  it('stops promptly while a reconnect attempt is in flight', async () => {
    const { listener, applicationName } = await started({ reconnect: { initialDelayMs: 1, maxDelayMs: 1 } });
    // Subscribed before the kill: with 1 ms backoff the reconnect can finish between two polls.
    const lost = firstValueFrom(listener.state$.pipe(filter((s) => s === 'reconnecting')));
    await terminateListener(applicationName);
    await lost;
    await prompt(listener.stop(), 'a stop during a reconnect attempt');
    await waitFor(async () => (await backendsNamed(applicationName)) === 0, 5_000, 'no backend left');
  });

  it('shutdown closes the connection, completes the streams, and is idempotent', async () => {
    const { listener, applicationName } = await started();
    let completed = 0;
    listener.notifications$.subscribe({ complete: () => completed++ });
    listener.state$.subscribe({ complete: () => completed++ });
    await Promise.all([listener.onApplicationShutdown(), listener.stop()]);
    await listener.stop();
    expect(listener.state).toBe('closed');
    expect(completed).toBe(2);
    await waitFor(async () => (await backendsNamed(applicationName)) === 0, 5_000, 'no backend left');
    expect(await listener.selfProbe()).toBe(false);
  });

  it('a listener that goes deaf (its backend frozen, never resumed) is found out by the heartbeat, stops being trusted, reconnects and is trusted again', async (ctx) => {
    if (!(await signalsBackends(db))) return ctx.skip();
    const { listener, connection, applicationName } = await started({ heartbeat: { intervalMs: 200, timeoutMs: 300 } });
    const deaf = await backendPid(db, applicationName);
    process.kill(deaf, 'SIGSTOP');
    frozenPids.push(deaf);
    await waitFor(() => listener.probe.ok === false, 10_000, 'a failed heartbeat');
    expect(listener.isTrusted()).toBe(false);
    expect(listener.probe.reason).toMatch(/did not arrive on the listener within 300 ms/);
    await waitFor(() => connection.reconnects === 1 && listener.probe.ok === true, 10_000, 'a new connection proven by a heartbeat');
    expect(listener.isTrusted()).toBe(true);
    await notify('{"k":"global","o":"after-deafness"}');
    await waitFor(async () => listener.stats().received === 1, 5_000, 'delivery on the new connection');
  });

  it('fails its probe when it listens somewhere the pool does not notify (another database), saying so', async () => {
    const other = await createTestDatabase();
    try {
      const { listener } = track({ connection: { connectionString: other.url } });
      await listener.onModuleInit();
      expect(listener.probe.ok).toBe(false);
      expect(listener.isTrusted()).toBe(false);
      expect(listener.probe.reason).toMatch(/did not arrive on the listener.*points at another server than the pool/);
    } finally {
      await Promise.all(listeners.splice(0).map((l) => l.stop()));
      await other.drop();
    }
  });
});

describe('PgDedicatedConnection (the dedicated connection)', () => {
  it('runs claims one at a time (no overlapping queries on one client) and releases them with a wake-up', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const { connection, seen } = await started({ extraChannels: ['module_cache_computed'] });
    try {
      const keys = Array.from({ length: 40 }, (_, i) => String(1000 + i));
      expect(await Promise.all(keys.map((k) => connection.tryLock(k)))).toEqual(keys.map(() => true));
      await Promise.all(keys.map((k) => connection.unlockAndNotify(k, 'module_cache_computed', encodeWakeUp(k, 't'))));
      await waitFor(() => seen.raw.length === keys.length, 5_000, 'every wake-up');
      expect(
        await db.query(
          `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $1)`,
          [db.name],
        ),
      ).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => /already executing a query/.test(w.message))).toEqual([]);
  });

  it('answers "unavailable" instead of hanging when its server stops answering, and reconnects', async (ctx) => {
    if (!(await signalsBackends(db))) return ctx.skip();
    const { connection, applicationName } = await started();
    const pid = await backendPid(db, applicationName);
    process.kill(pid, 'SIGSTOP');
    frozenPids.push(pid);
    expect(await prompt(connection.tryLock('42'), 'a claim on a frozen connection')).toBe('unavailable');
    await waitFor(() => connection.reconnects === 1 && connection.state === 'listening', 10_000, 'a new connection');
    expect(await connection.tryLock('42')).toBe(true);
  });
});
