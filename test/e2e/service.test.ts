import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { freePort } from '../support/embedded-postgres';
import { waitFor } from '../support/wait';

/**
 * The service as a user starts it (main.ts: a cluster primary and its workers), through ts-node so
 * no build is needed. Workers share the port; the primary hands out connections round-robin, so
 * every request here opens its own connection, and "each worker" means "until both have answered".
 */
const ROOT = path.resolve(__dirname, '../..');
const START_TIMEOUT_MS = 120_000;

interface Service {
  child: ChildProcess;
  port: number;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

function startService(env: Record<string, string | undefined>): Service {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'sample/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, TS_NODE_PROJECT: 'tsconfig.json', TS_NODE_TRANSPILE_ONLY: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, port: Number(env.PORT), output: () => output, exited };
}

/** One request on a fresh connection (so the cluster may hand it to any worker). An array header is sent once per value. */
function call(
  port: number,
  method: string,
  pathAndQuery: string,
  body?: unknown,
  headers: Record<string, string | string[]> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method,
        path: pathAndQuery,
        agent: false,
        headers: { ...headers, ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) },
        timeout: 30_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text, json: () => JSON.parse(text) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${pathAndQuery} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * Repeats a request until every one of `workers` has answered with `accept(answer)` true; returns
 * the accepted answers by worker id. A worker that answers "not yet" is simply asked again.
 */
async function untilEachWorker(
  port: number,
  workers: number,
  pathAndQuery: string,
  accept: (answer: Answer) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<Map<string, Answer>> {
  const accepted = new Map<string, Answer>();
  await waitFor(
    async () => {
      const answer = await call(port, 'GET', pathAndQuery);
      const worker = String(answer.headers['x-worker']);
      if (accept(answer)) accepted.set(worker, answer);
      return accepted.size === workers;
    },
    timeoutMs,
    `${what} from all ${workers} workers (so far: ${[...accepted.keys()].join(', ') || 'none'})`,
  );
  return accepted;
}

async function stopService(service: Service, timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`service did not exit within ${timeoutMs} ms:\n${service.output()}`)), timeoutMs);
  });
  try {
    return await Promise.race([service.exited, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

async function untilUp(service: Service): Promise<void> {
  await waitFor(
    async () => {
      if (service.child.exitCode !== null) throw new Error(`service exited (${service.child.exitCode}):\n${service.output()}`);
      return (await call(service.port, 'GET', '/')).status === 200;
    },
    START_TIMEOUT_MS,
    'GET / to answer',
    250,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n--- service output ---\n${service.output()}`);
  });
}

describe('the service: two workers on a shared database', () => {
  let db: TestDatabase;
  let realmsDir: string;
  let service: Service;
  let realmsURL: string;
  let realmURL: string;
  /** A module URL of the public sample realm `realm`, or of another realm with `realm/file`-style paths via `at`. */
  const moduleURL = (file: string) => `${realmURL}${file}`;
  const at = (realmAndFile: string) => `${realmsURL}${realmAndFile}`;
  const definitionsOf = (url: string) => `/definitions?url=${encodeURIComponent(url)}`;
  const definitions = (file: string) => definitionsOf(moduleURL(file));
  /** The rows a URL has in the table, by scope. */
  const scopesOf = async (url: string) =>
    (await db.query<{ scope: string }>('SELECT scope FROM module_cache_entries WHERE url = $1 ORDER BY scope', [url])).map((r) => r.scope);

  beforeAll(async () => {
    db = await createTestDatabase();
    // The two sample realms, copied: the public `realm` and `private-notes` (with its .private file).
    realmsDir = mkdtempSync(path.join(tmpdir(), 'module-cache-service-realms-'));
    for (const realm of ['realm', 'private-notes']) {
      cpSync(path.join(ROOT, 'sample', 'realms', realm), path.join(realmsDir, realm), { recursive: true });
    }
    const port = await freePort();
    realmsURL = `http://localhost:${port}/`;
    realmURL = `${realmsURL}realm/`;
    service = startService({ WORKERS: '2', PORT: String(port), REALMS_DIR: realmsDir, DATABASE_URL: db.url });
    await untilUp(service);
  }, START_TIMEOUT_MS + 10_000);

  afterAll(async () => {
    if (service) await stopService(service).catch(() => service.child.kill('SIGKILL'));
    await db?.drop();
    if (realmsDir) rmSync(realmsDir, { recursive: true, force: true });
  }, 60_000);

  it('GET / lists the endpoints, the realms and example commands', async () => {
    const index = (await call(service.port, 'GET', '/')).json<{
      endpoints: { route: string }[];
      realms: { url: string; mounted: { name: string; url: string; private: boolean }[] };
      try: string[];
    }>();
    expect(index.endpoints.map((e) => e.route.split(' ').slice(0, 2).join(' '))).toEqual(
      expect.arrayContaining(['GET /definitions?url=URL[&scope=S]', 'POST /invalidate', 'GET /health', 'GET /metrics', 'GET /events']),
    );
    expect(index.realms.url).toBe(realmsURL);
    expect(index.realms.mounted).toEqual(
      expect.arrayContaining([
        { name: 'realm', url: realmURL, private: false },
        { name: 'private-notes', url: at('private-notes/'), private: true },
      ]),
    );
    expect(index.try.join('\n')).toContain(moduleURL('pet-owner.ts'));
    expect(index.try.join('\n')).toContain(`-H 'x-user: alice'`);
  });

  it("both realms are served, definitions and files, by each worker (files without the realm's dotfiles)", async () => {
    const ok = (answer: Answer) => answer.status === 200;
    await untilEachWorker(service.port, 2, definitions('pet-owner.ts'), ok, 'realm/pet-owner.ts');
    const notes = await untilEachWorker(service.port, 2, definitionsOf(at('private-notes/note.ts')), ok, 'private-notes/note.ts');
    expect(notes.get('0')!.json<{ definitions: object }>().definitions).toEqual({
      NoteId: { kind: 'type', line: 2 },
      Note: { kind: 'interface', line: 4 },
      summarize: { kind: 'function', line: 10 },
    });
    const file = await call(service.port, 'GET', '/realm/pet-card.gts');
    expect({ status: file.status, type: file.headers['content-type'] }).toEqual({ status: 200, type: 'text/plain; charset=utf-8' });
    expect(file.text).toBe(readFileSync(path.join(realmsDir, 'realm', 'pet-card.gts'), 'utf8'));
    expect((await call(service.port, 'GET', '/private-notes/note.ts')).status).toBe(200);
    for (const hidden of ['/private-notes/.private', '/private-notes/', '/realm/nope.ts', '/realm/..%2F..%2Fpackage.json'])
      expect({ hidden, status: (await call(service.port, 'GET', hidden)).status }).toEqual({ hidden, status: 404 });
  });

  it('a .gts card module with templates answers its definitions, and the modules importing it theirs', async () => {
    const card = await call(service.port, 'GET', definitions('pet-card.gts'));
    expect(card.status).toBe(200);
    expect(card.json()).toMatchObject({
      url: moduleURL('pet-card.gts'),
      definitions: { PetCard: { kind: 'class', line: 10 }, isCat: { kind: 'function', line: 31 } },
      // Stored dependencies are aliases: without the executable extension.
      deps: [moduleURL('pet'), moduleURL('greeting')],
    });
    expect(card.json()).not.toHaveProperty('error');
    const one = await call(service.port, 'GET', `${definitions('pet-card.gts')}&name=PetCard`);
    expect(one.json()).toMatchObject({ name: 'PetCard', definition: { kind: 'class', line: 10 } });
    const gallery = await call(service.port, 'GET', definitions('pet-gallery.gts'));
    expect(gallery.json()).toMatchObject({
      definitions: { EmptyGallery: { kind: 'const' }, default: { kind: 'default' } },
      deps: [moduleURL('pet-card'), moduleURL('greeting')],
    });
    // A template-only component: its top-level <template> is the default export.
    expect((await call(service.port, 'GET', definitions('greeting.gjs'))).json()).toMatchObject({
      definitions: { default: { kind: 'default' } },
    });
  });

  it('a private realm caches one row per x-user; a public realm one `public` row for everybody', async () => {
    const lookup = (url: string, user?: string | string[]) =>
      call(service.port, 'GET', definitionsOf(url), undefined, user === undefined ? {} : { 'x-user': user });
    const note = at('private-notes/notebook.gts');
    for (const user of ['alice', 'bob']) {
      const answer = await lookup(note, user);
      expect(answer.status).toBe(200);
      expect(answer.json()).toMatchObject({ scope: `user:${user}`, definitions: { default: { kind: 'default', line: 5 } } });
    }
    expect(await scopesOf(note)).toEqual(['user:alice', 'user:bob']);
    // Nobody named: one anonymous user.
    expect((await lookup(note)).json()).toMatchObject({ scope: 'user:anonymous' });

    const greeting = moduleURL('greeting.gjs');
    for (const user of ['alice', 'bob', undefined]) expect((await lookup(greeting, user)).json()).toMatchObject({ scope: 'public' });
    expect(await scopesOf(greeting)).toEqual(['public']);

    // One non-empty x-user, or a 400 that says so.
    for (const bad of ['', ['alice', 'bob']]) {
      const answer = await lookup(note, bad);
      expect({ bad, status: answer.status }).toEqual({ bad, status: 400 });
      expect(answer.json<{ message: string }>().message).toMatch(/"x-user" must be one non-empty header/);
    }
    const named = await call(service.port, 'GET', `${definitionsOf(note)}&name=default`, undefined, { 'x-user': 'carol' });
    expect(named.json()).toMatchObject({ name: 'default', definition: { kind: 'default' } });
    expect(await scopesOf(note)).toEqual(['user:alice', 'user:anonymous', 'user:bob', 'user:carol']);
  });

  it('a realm folder created at runtime is mounted by every worker; removed, it is unmounted everywhere and its rows cleared', async () => {
    const extra = path.join(realmsDir, 'extra');
    mkdirSync(extra);
    writeFileSync(path.join(extra, 'a.ts'), "import { b } from './b.gts';\nexport const a = b;\n");
    writeFileSync(path.join(extra, 'b.gts'), 'export const b = 1;\n\nexport const B = <template>{{b}}</template>;\n');
    const mounted = await untilEachWorker(
      service.port,
      2,
      definitionsOf(at('extra/a.ts')),
      (a) => a.status === 200,
      'a lookup in the new realm',
    );
    expect(mounted.get('1')!.json()).toMatchObject({
      realmURL: at('extra/'),
      definitions: { a: { kind: 'const' } },
      deps: [at('extra/b')],
    });
    await untilEachWorker(service.port, 2, definitionsOf(at('extra/b.gts')), (a) => a.status === 200, "the new realm's .gts");
    // A row to be cleared: the watcher worker's invalidations of the new files may delete the first ones computed.
    await waitFor(
      async () =>
        (await call(service.port, 'GET', definitionsOf(at('extra/a.ts')))).status === 200 &&
        (await scopesOf(at('extra/a.ts'))).length === 1,
      10_000,
      "a row of the new realm's a.ts",
    );

    rmSync(extra, { recursive: true });
    const gone = (a: Answer) => a.status === 404 && /not inside any registered realm/.test(a.json<{ message: string }>().message);
    await untilEachWorker(service.port, 2, definitionsOf(at('extra/a.ts')), gone, 'the removed realm to be unknown');
    // Cleared once, by the watcher worker, for every worker.
    await waitFor(
      async () => (await db.query('SELECT 1 FROM module_cache_entries WHERE realm = $1', [at('extra/')])).length === 0,
      10_000,
      "the removed realm's rows to be cleared",
    );
    expect((await call(service.port, 'GET', '/extra/a.ts')).status).toBe(404);
    // The other realms are still there.
    expect((await call(service.port, 'GET', definitions('pet.ts'))).status).toBe(200);
  });

  it('both workers serve definitions; an edit in the realm reaches both, and the consumers are recomputed', async () => {
    const entry = (answer: Answer) => answer.json<{ definitions: Record<string, { kind: string }>; deps: string[]; createdAt: string }>();
    const ok = (answer: Answer) => answer.status === 200;
    // Warm every worker's memory tier with the leaf and two consumers.
    const before = {
      person: await untilEachWorker(service.port, 2, definitions('person.ts'), ok, 'person.ts'),
      pet: await untilEachWorker(service.port, 2, definitions('pet.ts'), ok, 'pet.ts'),
      owner: await untilEachWorker(service.port, 2, definitions('pet-owner.ts'), ok, 'pet-owner.ts'),
    };
    const owner = entry(before.owner.get('0')!);
    expect(Object.keys(owner.definitions)).toEqual(expect.arrayContaining(['PetOwner', 'adopt', 'MAX_PETS']));
    expect(owner.definitions.PetOwner.kind).toBe('class');
    expect(owner.deps).toEqual(expect.arrayContaining([`${realmURL}pet`, `${realmURL}person`]));
    expect(entry(before.person.get('0')!).definitions).not.toHaveProperty('Nickname');
    // Both workers answer from the one table: the same row, so the same createdAt.
    expect(entry(before.owner.get('1')!).createdAt).toBe(owner.createdAt);

    const file = path.join(realmsDir, 'realm', 'person.ts');
    writeFileSync(file, `${readFileSync(file, 'utf8')}\nexport type Nickname = string;\n`);

    // Only worker 0 watches the folder: worker 1 hears of the change over NOTIFY.
    await untilEachWorker(
      service.port,
      2,
      definitions('person.ts'),
      (a) => ok(a) && entry(a).definitions.Nickname?.kind === 'type',
      'the edited person.ts',
    );
    for (const [file, seen] of [
      ['pet.ts', before.pet],
      ['pet-owner.ts', before.owner],
    ] as const) {
      const old = entry(seen.get('0')!).createdAt;
      const fresh = await untilEachWorker(
        service.port,
        2,
        definitions(file),
        (a) => ok(a) && entry(a).createdAt !== old,
        `a recomputed ${file}`,
      );
      for (const answer of fresh.values()) expect(new Date(entry(answer).createdAt).getTime()).toBeGreaterThan(new Date(old).getTime());
    }
  });

  it('answers one definition, and explains what it cannot answer', async () => {
    const one = await call(service.port, 'GET', `${definitions('pet-owner.ts')}&name=adopt`);
    expect(one.status).toBe(200);
    expect(one.json()).toMatchObject({ url: moduleURL('pet-owner.ts'), name: 'adopt', definition: { kind: 'function' } });

    const cases: [string, number, RegExp][] = [
      ['/definitions', 400, /"url" is required/],
      ['/definitions?url=not-a-url', 400, /not an absolute URL/],
      ['/definitions?url=ftp%3A%2F%2Fx%2Fy.ts', 400, /http\(s\)/],
      [`${definitions('pet.ts')}&url=${encodeURIComponent(moduleURL('person.ts'))}`, 400, /"url" must be one non-empty string/],
      [`/definitions?url=${encodeURIComponent('https://elsewhere.test/realm/a.ts')}`, 404, /not inside any registered realm/],
      [definitions('no-such-module.ts'), 404, /no module at/],
      [`${definitions('pet-owner.ts')}&name=nope`, 404, /no such export/],
      [`${definitions('broken.ts')}&name=broken`, 404, /module has an error/],
    ];
    for (const [query, status, message] of cases) {
      const answer = await call(service.port, 'GET', query);
      expect({ query, status: answer.status }).toEqual({ query, status });
      expect(answer.json<{ message: string }>().message).toMatch(message);
    }
    expect((await call(service.port, 'POST', '/invalidate', {})).status).toBe(400);
    expect((await call(service.port, 'POST', '/invalidate', { urls: [] })).status).toBe(400);
    expect((await call(service.port, 'POST', '/invalidate', { urls: ['x', 3] })).status).toBe(400);
    // As the reference answers: nothing to invalidate outside every realm, and any realm prefix may be cleared.
    expect((await call(service.port, 'POST', '/invalidate', { url: 'https://elsewhere.test/realm/a.ts' })).json()).toEqual({
      invalidated: [],
    });
    expect((await call(service.port, 'POST', '/realms/clear', { realm: 'https://elsewhere.test/realm/' })).json()).toMatchObject({
      deleted: 0,
    });
    expect((await call(service.port, 'POST', '/realms/clear', { realm: 'https://elsewhere.test/no-slash' })).status).toBe(400);
  });

  it('prewarms the public realm when it is mounted; POST /prewarm warms modules, stores no error entry, answers the summary', async () => {
    // The watcher worker prewarmed `realm` (public) at start-up, and not `private-notes`.
    await waitFor(() => service.output().includes(`realm ${realmURL} mounted: prewarmed`), 30_000, 'the prewarm at mount');
    expect(service.output()).not.toContain(`realm ${at('private-notes/')} mounted: prewarmed`);

    // Neither in any worker's memory nor in the table.
    for (const file of ['broken.ts', 'utils/format.ts']) await call(service.port, 'POST', '/invalidate', { url: moduleURL(file) });
    const answer = await call(service.port, 'POST', '/prewarm', {
      realm: realmURL,
      modules: [moduleURL('utils/format.ts'), moduleURL('broken.ts'), moduleURL('pet.ts'), at('private-notes/note.ts')],
    });
    expect(answer.status).toBe(200);
    const summary = answer.json<{ requested: number; warmed: number; alreadyCached: number; skipped: number; errors: { url: string }[] }>();
    expect(summary).toMatchObject({ realmURL, requested: 4, skipped: 1, errors: [{ url: moduleURL('broken.ts') }] });
    expect(summary.warmed + summary.alreadyCached).toBe(2);
    expect(await scopesOf(moduleURL('utils/format.ts'))).toEqual(['public']);
    // The module error was reported, not stored.
    expect(await scopesOf(moduleURL('broken.ts'))).toEqual([]);

    // The whole realm, as listed by the source: every module file of its folder.
    const all = (await call(service.port, 'POST', '/prewarm', { realm: realmURL })).json<{ requested: number; skipped: number }>();
    expect(all).toMatchObject({ requested: 12, skipped: 0 });

    for (const [body, code] of [
      [{ realm: 'not a realm' }, 'E_INVALID_REALM_URL'],
      [{ realm: realmURL, modules: [42] }, undefined],
      [{}, undefined],
    ] as const) {
      const bad = await call(service.port, 'POST', '/prewarm', body);
      expect({ body, status: bad.status }).toEqual({ body, status: 400 });
      if (code) expect(bad.json()).toMatchObject({ code });
    }
  });

  it('every error answers { statusCode, code, message }: a syntax error 422, a wrong method 405, a huge URL 414', async () => {
    const broken = await call(service.port, 'GET', definitions('broken.ts'));
    expect(broken.status).toBe(422);
    expect(broken.json()).toMatchObject({
      statusCode: 422,
      code: 'E_MODULE_ERROR',
      message: expect.stringMatching(/SyntaxError/),
      entry: { url: moduleURL('broken.ts'), error: { status: 422 } },
    });
    const cases: [string, string, number, string, string?][] = [
      ['GET', '/definitions', 400, 'E_BAD_REQUEST'],
      ['GET', definitionsOf('https://elsewhere.test/realm/a.ts'), 404, 'E_UNKNOWN_REALM'],
      ['GET', definitions('no-such-module.ts'), 404, 'E_MODULE_NOT_FOUND'],
      ['GET', '/no-such-route', 404, 'E_NOT_FOUND'],
      ['PUT', definitions('pet.ts'), 405, 'E_METHOD_NOT_ALLOWED', 'GET'],
      ['GET', '/invalidate', 405, 'E_METHOD_NOT_ALLOWED', 'POST'],
      ['DELETE', '/clear', 405, 'E_METHOD_NOT_ALLOWED', 'POST'],
      ['GET', `/definitions?url=${'a'.repeat(100_000)}`, 414, 'E_URI_TOO_LONG'],
      ['GET', '/health', 431, 'E_REQUEST_HEADER_FIELDS_TOO_LARGE'],
    ];
    for (const [method, target, status, code, allow] of cases) {
      const headers: Record<string, string> = status === 431 ? { 'x-padding': 'p'.repeat(100_000) } : {};
      const answer = await call(service.port, method, target, undefined, headers);
      const what = `${method} ${target.slice(0, 60)}`;
      expect({ what, status: answer.status, allow: answer.headers.allow }).toEqual({ what, status, allow });
      expect(Object.keys(answer.json()).sort(), what).toEqual(['code', 'message', 'statusCode']);
      expect(answer.json(), what).toMatchObject({ statusCode: status, code, message: expect.any(String) });
    }
  });

  it('reads x-user as UTF-8, and refuses one that is not', async () => {
    const note = at('private-notes/note.ts');
    // Node's client sends a header string's characters as bytes: these are élève's UTF-8 bytes.
    const utf8 = Buffer.from('élève', 'utf8').toString('latin1');
    const answer = await call(service.port, 'GET', definitionsOf(note), undefined, { 'x-user': utf8 });
    expect(answer.status).toBe(200);
    expect(answer.json()).toMatchObject({ scope: 'user:élève' });
    expect(await scopesOf(note)).toContain('user:élève');
    const latin1 = await call(service.port, 'GET', definitionsOf(note), undefined, { 'x-user': 'élève' });
    expect({ status: latin1.status, body: latin1.json() }).toMatchObject({
      status: 400,
      body: { code: 'E_BAD_REQUEST', message: '"x-user" must be UTF-8' },
    });
  });

  it('POST /invalidate, /realms/clear and /clear', async () => {
    const invalidated = await call(service.port, 'POST', '/invalidate', { url: moduleURL('pet.ts') });
    expect(invalidated.status).toBe(200);
    expect(invalidated.json<{ invalidated: string[] }>().invalidated).toEqual(expect.arrayContaining([moduleURL('pet.ts')]));
    const many = await call(service.port, 'POST', '/invalidate', { urls: [moduleURL('pet.ts'), moduleURL('person.ts')] });
    expect(many.status).toBe(200);
    expect(many.json<{ invalidated: string[] }>().invalidated).toEqual(
      expect.arrayContaining([moduleURL('pet.ts'), moduleURL('person.ts')]),
    );
    const realm = await call(service.port, 'POST', '/realms/clear', { realm: realmURL });
    expect(realm.status).toBe(200);
    expect(realm.json()).toMatchObject({ realm: realmURL, deleted: expect.any(Number) });
    const all = await call(service.port, 'POST', '/clear');
    expect(all.status).toBe(200);
    expect(all.json()).toMatchObject({ deleted: expect.any(Number) });
    expect((await call(service.port, 'GET', definitions('pet.ts'))).status).toBe(200);
  });

  it('/health is up, /metrics speaks Prometheus, /events streams cache events', async () => {
    const health = await untilEachWorker(service.port, 2, '/health', (a) => a.status === 200, '/health');
    for (const answer of health.values()) expect(answer.json()).toMatchObject({ status: 'ok' });

    const metrics = await call(service.port, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(String(metrics.headers['content-type'])).toMatch(/^text\/plain/);
    expect(metrics.text).toMatch(/^module_cache_computations_total \d+$/m);
    // Whichever worker answers, the numbers are the cluster's: both workers' listeners count.
    expect(metrics.text).toMatch(/^module_cache_listener_listening 2$/m);
    // Relay mode (the default): the primary holds the host's only dedicated connection.
    const dedicated = await db.query<{ application_name: string }>(
      `SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND application_name IN ('module-cache-relay', 'module-cache-listener')`,
      [db.name],
    );
    expect(dedicated.map((r) => r.application_name)).toEqual(['module-cache-relay']);

    const events = await openEvents(service.port);
    try {
      // Whichever worker holds the stream hears of it: as its own invalidation or a peer's.
      await waitFor(
        async () => {
          await call(service.port, 'POST', '/invalidate', { url: moduleURL('utils/format.ts') });
          return events.received().some((e) => /invalidated/.test(String(e.type)) && JSON.stringify(e).includes('utils/format'));
        },
        20_000,
        'an invalidation event on /events',
        500,
      );
    } finally {
      events.close();
    }
  });

  it('SIGTERM stops every worker cleanly: exit 0, no connection left', async () => {
    const { code, signal } = await stopService(service);
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    // A backend ends just after its client's socket closes: poll briefly rather than race it.
    const connections = () =>
      db.query<{ application_name: string }>(
        `SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [db.name],
      );
    await waitFor(async () => (await connections()).length === 0, 5_000, "the workers' connections to end").catch(async (error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(await connections())}`);
    });
  });
});

describe('the service without DATABASE_URL: an embedded PostgreSQL', () => {
  it(
    'starts one, serves from it, and on SIGTERM stops it and removes its data',
    async () => {
      const port = await freePort();
      const service = startService({ WORKERS: '1', PORT: String(port), DATABASE_URL: undefined });
      try {
        await untilUp(service);
        const dataDir = /data in (\S+),/.exec(service.output())?.[1];
        expect(dataDir, service.output()).toBeDefined();
        expect(existsSync(dataDir!)).toBe(true);
        const answer = await call(port, 'GET', `/definitions?url=${encodeURIComponent(`http://localhost:${port}/realm/pet-owner.ts`)}`);
        expect(answer.status).toBe(200);
        expect(answer.json<{ definitions: object }>().definitions).toHaveProperty('PetOwner');
        expect(await stopService(service)).toEqual({ code: 0, signal: null });
        expect(existsSync(dataDir!)).toBe(false);
      } finally {
        if (service.child.exitCode === null) service.child.kill('SIGKILL');
      }
    },
    START_TIMEOUT_MS + 60_000,
  );
});

describe('the service cannot listen, or is asked to migrate nothing in particular', () => {
  it('a port in use is one line naming PORT and exit 1, before anything starts', async () => {
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const service = startService({ WORKERS: '2', PORT: String(port), DATABASE_URL: undefined });
      expect(await service.exited).toEqual({ code: 1, signal: null });
      const lines = service.output().trim().split('\n');
      expect(lines, service.output()).toEqual([
        `module-cache service: PORT ${port} on 127.0.0.1 is already in use: stop what listens there or set PORT to a free port`,
      ]);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  }, 60_000);

  it('ormconfig.ts (npm run migration:run) refuses to guess a database, and says which one it migrates', async () => {
    const show = (env: Record<string, string | undefined>) =>
      new Promise<{ code: number | null; output: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          [path.join(ROOT, 'node_modules/typeorm/cli-ts-node-commonjs.js'), 'migration:show', '-d', 'ormconfig.ts'],
          {
            cwd: ROOT,
            env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1', ...env },
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let output = '';
        child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.once('exit', (code) => resolve({ code, output }));
      });
    const unset = await show({ DATABASE_URL: undefined });
    expect(unset.code).not.toBe(0);
    expect(unset.output).toMatch(/DATABASE_URL is unset/);
    const db = await createTestDatabase();
    try {
      const set = await show({ DATABASE_URL: db.url });
      expect(set.code, set.output).toBe(0);
      expect(set.output).toContain(`ormconfig.ts: module-cache migrations on`);
      expect(set.output).toContain(`/${db.name}`);
    } finally {
      await db.drop();
    }
  }, 60_000);
});

function openEvents(port: number): { received(): Record<string, unknown>[]; close(): void } {
  const events: Record<string, unknown>[] = [];
  let buffer = '';
  const req = httpRequest({ host: '127.0.0.1', port, path: '/events', agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const data = buffer
          .slice(0, end)
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trim())
          .join('\n');
        buffer = buffer.slice(end + 2);
        if (data) events.push(JSON.parse(data));
      }
    });
  });
  req.on('error', () => {});
  req.end();
  return { received: () => events, close: () => req.destroy() };
}
