/**
 * The packed package, as a new user gets it: `npm pack`, install the tarball with only its required
 * peers, TypeScript and @types/node into an empty app, type-check a small Nest app against the published
 * types and exports map as CommonJS and as ESM (module: nodenext, skipLibCheck: false), run both on a
 * fresh database, then build and run examples/minimal (an HTTP app) from the same install. The repository's own tests cannot see a file missing from the
 * tarball, a runtime import of a devDependency, broken `types`, or an optional peer that is not.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { freePort, startEmbeddedPostgres } from '../test/support/embedded-postgres';

const repo = path.resolve(__dirname, '..');
// The required peers only: @nestjs/terminus and prom-client are optional and must stay so.
const PEERS = ['@nestjs/common', '@nestjs/core', '@nestjs/typeorm', 'typeorm', 'pg', 'rxjs', 'reflect-metadata'];
const LOCAL_URL = 'postgres://postgres@127.0.0.1:5432/test';
const CONSUMER_TIMEOUT_MS = 120_000;
const KINDS = [
  ['cjs', 'commonjs'],
  ['esm', 'module'],
] as const;

/**
 * The strict consumer app, compiled twice from this one text: as CommonJS and as ESM (by the
 * `type` of its folder's package.json), both with `module: nodenext` and `skipLibCheck: false`,
 * so the package's own .d.ts files are checked too. A controller injects the lookup service.
 */
const APP_TS = `import 'reflect-metadata';
import { Controller, Get, Module, Query } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import {
  CachingDefinitionLookup,
  ModuleCacheModule,
  ModuleNotFoundError,
  moduleCacheEntities,
  moduleCacheMigrations,
  type DefinitionSource,
  type ModuleCacheEntry,
  type ModuleCacheOptions,
} from '@module-cache/nestjs';
import { ModuleCacheClusterRelay } from '@module-cache/nestjs/cluster';

const A = 'https://consumer.test/realm/a.ts';
let version = 1;

const source: DefinitionSource = {
  async load(url) {
    return url === A ? { definitions: { value: { version } }, deps: [] } : null;
  },
};

// pg's ClientConfig, as the options declare it (@types/pg comes with the package).
const options: ModuleCacheOptions = {
  realms: ['https://consumer.test/realm/'],
  source,
  listener: { connection: { connectionString: process.env.DATABASE_URL, keepAlive: true } },
};

@Controller()
class DefinitionsController {
  constructor(private readonly lookup: CachingDefinitionLookup) {}

  @Get('definitions')
  async definitions(@Query('url') url: string): Promise<ModuleCacheEntry> {
    const entry = await this.lookup.lookup(url);
    if (!entry) throw new ModuleNotFoundError(url);
    return entry;
  }
}

@Module({
  imports: [
    TypeOrmModule.forRoot({
      type: 'postgres',
      url: process.env.DATABASE_URL,
      entities: moduleCacheEntities,
      migrations: moduleCacheMigrations,
      migrationsRun: true,
      retryAttempts: 1,
    }),
    ModuleCacheModule.forRoot(options),
  ],
  controllers: [DefinitionsController],
})
class AppModule {}

const KIND = process.env.CONSUMER_KIND;

function check(step: string, ok: boolean, got: unknown): void {
  if (!ok) throw new Error(step + ': got ' + JSON.stringify(got));
  console.log('consumer (' + KIND + '): ' + step + ': ok');
}

const versionOf = (entry: ModuleCacheEntry | undefined) => (entry?.definitions.value as { version?: number } | undefined)?.version;

async function main(): Promise<void> {
  // A variable, so tsc does not load the subpath's types (they need the optional peer this app lacks).
  const health = '@module-cache/nestjs/health';
  const healthError = await import(health).then(
    () => 'it loaded',
    (error: unknown) => (error instanceof Error ? error.message : String(error)),
  );
  check("'@module-cache/nestjs/health' fails naming @nestjs/terminus", healthError.includes('@nestjs/terminus'), healthError);
  check("'@module-cache/nestjs/cluster' exports the relay", typeof ModuleCacheClusterRelay === 'function', typeof ModuleCacheClusterRelay);

  // abortOnError: false, or a failed start would process.abort() instead of reporting.
  const app = await NestFactory.createApplicationContext(AppModule, { logger: ['error', 'warn'], abortOnError: false });
  console.log('consumer (' + KIND + '): application context started (migrations ran)');
  try {
    const lookup = app.get(CachingDefinitionLookup);
    await lookup.clearAll(); // the other app ran on this database first
    const controller = app.get(DefinitionsController);
    const first = await controller.definitions(A);
    check('the controller looks up a.ts: version 1', versionOf(first) === 1, first);
    version = 2;
    const invalidated = await lookup.invalidate(A);
    check('invalidate a.ts returns it', invalidated.includes(A), invalidated);
    const second = await controller.definitions(A);
    check('the controller looks up a.ts: version 2', versionOf(second) === 2, second);
    const missing = await controller.definitions('https://consumer.test/realm/nope.ts').catch((error: unknown) => error);
    check('a missing module is ModuleNotFoundError', missing instanceof ModuleNotFoundError && missing.code === 'E_MODULE_NOT_FOUND', String(missing));
  } finally {
    await app.close();
  }
  console.log('consumer (' + KIND + '): closed');
}

main().catch((error: unknown) => {
  console.error('consumer (' + KIND + '): FAILED: ' + (error instanceof Error ? error.stack : String(error)));
  process.exit(1);
});
`;

/** What a strict Nest 12 app compiles with: nodenext, the package's own declarations checked (skipLibCheck: false). */
const STRICT_TSCONFIG = {
  compilerOptions: {
    module: 'nodenext',
    target: 'ES2023',
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    strict: true,
    skipLibCheck: false,
    types: ['node'],
    rootDir: '.',
    outDir: 'dist',
  },
  files: ['app.ts'],
};

const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error));

// Ctrl-C or a CI timeout: stop before the next step, so the temp dirs and the database still go.
let interrupted: string | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => (interrupted = signal));

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env, timeout?: number): void {
  const what = `${path.basename(command)} ${args[0]}`;
  if (interrupted) throw new Error(`interrupted by ${interrupted} before ${what}`);
  const result = spawnSync(command, args, { cwd, env, stdio: 'inherit', timeout });
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') throw new Error(`${what} still ran after ${timeout} ms`);
  if (result.error) throw new Error(`${what}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`${what} ${result.signal ? `was killed by ${result.signal}` : `exited with ${result.status}`}`);
}

const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;

async function withClient<T>(url: string, use: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

const answers = (url: string) => withClient(url, async () => true).catch(() => false);

/** A server to create the throwaway database on, and how to let go of it. */
async function databaseServer(): Promise<{ url: string; label: string; stop?: () => Promise<void> }> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, label: 'DATABASE_URL' };
  if (await answers(LOCAL_URL)) return { url: LOCAL_URL, label: LOCAL_URL };
  const embedded = await startEmbeddedPostgres();
  return { url: embedded.url, label: 'embedded PostgreSQL', stop: () => embedded.stop() };
}

async function main(cleanups: Array<() => unknown>): Promise<void> {
  const packDir = mkdtempSync(path.join(os.tmpdir(), 'mc-consumer-'));
  cleanups.push(() => rmSync(packDir, { recursive: true, force: true }));
  console.log('== npm pack (prepack builds dist/)');
  // Lifecycle output goes to stderr; stdout is the JSON report alone.
  const packed = execFileSync('npm', ['pack', '--pack-destination', packDir, '--json'], {
    cwd: repo,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [tarball] = JSON.parse(packed) as Array<{ filename: string; entryCount: number; size: number; unpackedSize: number }>;
  const tarballPath = path.join(packDir, tarball.filename);
  console.log(`tarball: ${tarball.filename}, ${tarball.entryCount} files, ${tarball.size} bytes (${tarball.unpackedSize} unpacked)`);

  const appDir = mkdtempSync(path.join(os.tmpdir(), 'mc-consumer-app-'));
  cleanups.push(() => rmSync(appDir, { recursive: true, force: true }));
  writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }, null, 2));
  // The versions the repository is tested with, so a failure here is about packaging, not a new peer release.
  const pinned = (name: string) =>
    `${name}@${readJson<{ version: string }>(path.join(repo, 'node_modules', name, 'package.json')).version}`;
  // The required peers, TypeScript and @types/node: nothing else (pg's types come with the package).
  const installs = [...PEERS, 'typescript', '@types/node'].map(pinned);
  console.log(`== npm install ${tarball.filename} ${installs.join(' ')}`);
  run('npm', ['install', '--no-audit', '--no-fund', tarballPath, ...installs], appDir);
  const installed = readJson<{ dependencies?: Record<string, string> }>(
    path.join(appDir, 'node_modules', '@module-cache', 'nestjs', 'package.json'),
  );
  console.log(`@module-cache/nestjs dependencies: ${JSON.stringify(installed.dependencies ?? {})}`);
  const tsc = path.join(appDir, 'node_modules', '.bin', 'tsc');

  // One app text, two module systems: a folder's package.json `type` decides (node_modules is the parent's).
  for (const [kind, type] of KINDS) {
    const dir = path.join(appDir, kind);
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `consumer-${kind}`, private: true, type }, null, 2));
    writeFileSync(path.join(dir, 'app.ts'), APP_TS);
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(STRICT_TSCONFIG, null, 2));
    console.log(`== tsc (${kind} app: ${JSON.stringify({ type, module: 'nodenext', skipLibCheck: false })})`);
    run(tsc, ['-p', dir], dir);
  }

  // examples/minimal, as a user copies it: its own package.json and tsconfig, ESM, an HTTP app.
  const minimal = path.join(appDir, 'minimal');
  cpSync(path.join(repo, 'examples', 'minimal'), minimal, {
    recursive: true,
    filter: (from) => !/node_modules|dist/.test(path.basename(from)),
  });
  const wanted = Object.keys(readJson<{ dependencies: Record<string, string> }>(path.join(minimal, 'package.json')).dependencies);
  const extra = wanted.filter((name) => name !== '@module-cache/nestjs' && !PEERS.includes(name));
  console.log(`== npm install ${extra.join(' ')} (examples/minimal's other dependencies)`);
  run('npm', ['install', '--no-audit', '--no-fund', ...extra.map(pinned)], appDir);
  console.log('== tsc (examples/minimal)');
  run(tsc, ['-p', minimal], minimal);

  const server = await databaseServer();
  if (server.stop) cleanups.push(server.stop);
  const database = `mc_consumer_${randomBytes(6).toString('hex')}`;
  // The name is ours (hex), safe to quote into SQL; FORCE: a crashed consumer may leave sessions behind.
  await withClient(server.url, (client) => client.query(`CREATE DATABASE "${database}"`));
  cleanups.push(() => withClient(server.url, (client) => client.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)));
  const databaseUrl = new URL(server.url);
  databaseUrl.pathname = `/${database}`;
  const env = { ...process.env, DATABASE_URL: databaseUrl.href };
  for (const [kind] of KINDS) {
    console.log(`== node ${kind}/dist/app.js (database ${database} on ${server.label})`);
    // The timeout also catches an app that does not exit once closed (a leaked connection or timer).
    run(process.execPath, ['dist/app.js'], path.join(appDir, kind), { ...env, CONSUMER_KIND: kind }, CONSUMER_TIMEOUT_MS);
  }
  console.log('== examples/minimal: node dist/main.js, then HTTP');
  await runMinimal(minimal, env, cleanups);
}

/** Starts examples/minimal, asks it what its README shows, and stops it with SIGTERM (it must exit 0). */
async function runMinimal(dir: string, env: NodeJS.ProcessEnv, cleanups: Array<() => unknown>): Promise<void> {
  const port = await freePort();
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: dir,
    env: { ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  cleanups.push(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(
      () => reject(new Error(`examples/minimal did not listen within ${CONSUMER_TIMEOUT_MS} ms:\n${output}`)),
      CONSUMER_TIMEOUT_MS,
    );
    child.stdout!.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      output += chunk.toString();
      if (!output.includes('minimal example: listening')) return;
      clearTimeout(timer);
      resolve();
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`examples/minimal exited (${code}) before listening:\n${output}`));
    });
  });
  const base = `http://127.0.0.1:${port}`;
  const realm = 'https://example.test/realm/';
  const get = async (url: string) => {
    const response = await fetch(`${base}/definitions?url=${encodeURIComponent(url)}`);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const expectThat = (what: string, ok: boolean, got: unknown) => {
    if (!ok) throw new Error(`examples/minimal: ${what}: got ${JSON.stringify(got)}`);
    console.log(`examples/minimal: ${what}: ok`);
  };
  const first = await get(`${realm}app.ts`);
  expectThat(
    'GET app.ts is 200 with its deps',
    first.status === 200 && JSON.stringify(first.body.deps) === JSON.stringify([`${realm}util`]),
    first,
  );
  const again = await get(`${realm}app.ts`);
  expectThat('GET app.ts again is the cached entry', again.body.createdAt === first.body.createdAt, again);
  const invalidated = await fetch(`${base}/invalidate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url: `${realm}util.ts` }),
  });
  const list = ((await invalidated.json()) as { invalidated?: string[] }).invalidated ?? [];
  expectThat('POST /invalidate util.ts reaches its consumer app.ts', list.includes(`${realm}app.ts`), list);
  const fresh = await get(`${realm}app.ts`);
  expectThat('GET app.ts is recomputed', fresh.status === 200 && fresh.body.createdAt !== first.body.createdAt, fresh);
  const missing = await get(`${realm}nope`);
  expectThat('no module: 404 E_MODULE_NOT_FOUND', missing.status === 404 && missing.body.code === 'E_MODULE_NOT_FOUND', missing);
  const elsewhere = await get('https://elsewhere.test/a.ts');
  expectThat('unknown realm: 404 E_UNKNOWN_REALM', elsewhere.status === 404 && elsewhere.body.code === 'E_UNKNOWN_REALM', elsewhere);
  const bad = await fetch(`${base}/definitions`);
  const badBody = (await bad.json()) as Record<string, unknown>;
  expectThat('no url: 400 E_INVALID_MODULE_URL', bad.status === 400 && badBody.code === 'E_INVALID_MODULE_URL', badBody);
  child.kill('SIGTERM');
  // Nest's shutdown hooks close the app, then re-raise the signal: a clean stop ends by SIGTERM, not a crash.
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`examples/minimal did not exit within ${CONSUMER_TIMEOUT_MS} ms of SIGTERM`)),
      CONSUMER_TIMEOUT_MS,
    );
  });
  const end = await Promise.race([exited, stuck]).finally(() => clearTimeout(timer));
  expectThat('SIGTERM: closed, ended by the signal', end.signal === 'SIGTERM' || end.code === 0, end);
}

(async () => {
  const cleanups: Array<() => unknown> = [];
  let failure: string | undefined;
  await main(cleanups).catch((error: unknown) => (failure = `FAILED: ${errorMessage(error)}`));
  for (const cleanup of cleanups.reverse()) {
    await Promise.resolve()
      .then(cleanup)
      .catch((error: unknown) => {
        console.error(`consumer check: cleanup failed: ${errorMessage(error)}`);
        failure ??= 'FAILED: cleanup failed';
      });
  }
  if (failure) {
    console.error(`consumer check: ${failure}`);
    process.exit(1);
  }
  console.log('consumer check: ok');
})();
