/**
 * The packed package, as a new user gets it: `npm pack`, install the tarball with only its required
 * peers into an empty app, type-check a small Nest app against the published types and exports map,
 * and run it on a fresh database. The repository's own tests cannot see a file missing from the
 * tarball, a runtime import of a devDependency, broken `types`, or an optional peer that is not.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { startEmbeddedPostgres } from '../test/support/embedded-postgres';

const repo = path.resolve(__dirname, '..');
// The required peers only: @nestjs/terminus and prom-client are optional and must stay so.
const PEERS = ['@nestjs/common', '@nestjs/core', '@nestjs/typeorm', 'typeorm', 'pg', 'rxjs', 'reflect-metadata'];
const LOCAL_URL = 'postgres://postgres@127.0.0.1:5432/test';
const CONSUMER_TIMEOUT_MS = 120_000;

const APP_TS = `import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CachingDefinitionLookup, ModuleCacheModule, moduleCacheEntities, moduleCacheMigrations } from '@module-cache/nestjs';
import type { DefinitionSource, ModuleCacheEntry } from '@module-cache/nestjs';
import { ModuleCacheClusterRelay } from '@module-cache/nestjs/cluster';

// No @types/node in this app: declare the little of Node it uses.
declare const process: { env: Record<string, string | undefined>; exit(code: number): never };
declare const require: (id: string) => unknown;

const A = 'https://consumer.test/realm/a.ts';
let version = 1;

const source: DefinitionSource = {
  async load(url) {
    return url === A ? { definitions: { value: { version } }, deps: [] } : null;
  },
};

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
    ModuleCacheModule.forRoot({ realms: ['https://consumer.test/realm/'], source }),
  ],
})
class AppModule {}

function check(step: string, ok: boolean, got: unknown): void {
  if (!ok) throw new Error(step + ': got ' + JSON.stringify(got));
  console.log('consumer: ' + step + ': ok');
}

const versionOf = (entry: ModuleCacheEntry | undefined) => (entry?.definitions.value as { version?: number } | undefined)?.version;

async function main(): Promise<void> {
  let healthError = '';
  try {
    require('@module-cache/nestjs/health');
  } catch (error) {
    healthError = error instanceof Error ? error.message : String(error);
  }
  check("require('@module-cache/nestjs/health') fails naming @nestjs/terminus", healthError.includes('@nestjs/terminus'), healthError || 'it loaded');
  check("'@module-cache/nestjs/cluster' exports the relay", typeof ModuleCacheClusterRelay === 'function', typeof ModuleCacheClusterRelay);

  // abortOnError: false, or a failed start would process.abort() instead of reporting.
  const app = await NestFactory.createApplicationContext(AppModule, { logger: ['error', 'warn'], abortOnError: false });
  console.log('consumer: application context started (migrations ran)');
  try {
    const lookup = app.get(CachingDefinitionLookup);
    const first = await lookup.lookup(A);
    check('lookup a.ts is version 1', versionOf(first) === 1, first);
    version = 2;
    const invalidated = await lookup.invalidate(A);
    check('invalidate a.ts returns it', invalidated.includes(A), invalidated);
    const second = await lookup.lookup(A);
    check('lookup a.ts is version 2', versionOf(second) === 2, second);
  } finally {
    await app.close();
  }
  console.log('consumer: closed');
}

main().catch((error: unknown) => {
  console.error('consumer: FAILED: ' + (error instanceof Error ? error.stack : String(error)));
  process.exit(1);
});
`;

// Nest's default compiler settings; types: [] so nothing but the installed packages' own types is seen.
const TSCONFIG = {
  compilerOptions: {
    module: 'commonjs',
    target: 'ES2023',
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    strict: true,
    skipLibCheck: true,
    esModuleInterop: true,
    types: [],
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
  writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'commonjs' }, null, 2));
  // The versions the repository is tested with, so a failure here is about packaging, not a new peer release.
  const peers = PEERS.map(
    (name) => `${name}@${readJson<{ version: string }>(path.join(repo, 'node_modules', name, 'package.json')).version}`,
  );
  console.log(`== npm install ${tarball.filename} ${peers.join(' ')}`);
  run('npm', ['install', '--no-audit', '--no-fund', tarballPath, ...peers], appDir);
  const installed = readJson<{ dependencies?: Record<string, string> }>(
    path.join(appDir, 'node_modules', '@module-cache', 'nestjs', 'package.json'),
  );
  console.log(`@module-cache/nestjs dependencies: ${JSON.stringify(installed.dependencies ?? {})}`);

  console.log('== tsc (consumer app, published types)');
  writeFileSync(path.join(appDir, 'app.ts'), APP_TS);
  writeFileSync(path.join(appDir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
  run(path.join(repo, 'node_modules', '.bin', 'tsc'), ['-p', appDir], appDir);

  const server = await databaseServer();
  if (server.stop) cleanups.push(server.stop);
  const database = `mc_consumer_${randomBytes(6).toString('hex')}`;
  // The name is ours (hex), safe to quote into SQL; FORCE: a crashed consumer may leave sessions behind.
  await withClient(server.url, (client) => client.query(`CREATE DATABASE "${database}"`));
  cleanups.push(() => withClient(server.url, (client) => client.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)));
  const databaseUrl = new URL(server.url);
  databaseUrl.pathname = `/${database}`;
  console.log(`== node dist/app.js (database ${database} on ${server.label})`);
  // The timeout also catches an app that does not exit once closed (a leaked connection or timer).
  run(process.execPath, ['dist/app.js'], appDir, { ...process.env, DATABASE_URL: databaseUrl.href }, CONSUMER_TIMEOUT_MS);
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
