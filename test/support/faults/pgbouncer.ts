import { spawn, spawnSync } from 'node:child_process';
import { accessSync, chmodSync, chownSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from '../embedded-postgres';
import { queryOnce } from '../pg';
import { waitFor } from '../wait';

export interface PgBouncer {
  /** The test database's URL with host and port replaced by PgBouncer's. */
  url: string;
  /** e.g. "1.18.0" */
  version: string;
  stop(): Promise<void>;
}

/** The pgbouncer binary and its version, or undefined when it is not installed (Debian puts it in /usr/sbin). */
export function findPgBouncer(): { binary: string; version: string } | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'].filter(Boolean);
  for (const dir of dirs) {
    const binary = join(dir, 'pgbouncer');
    try {
      accessSync(binary, constants.X_OK);
    } catch {
      continue;
    }
    const out = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    const version = /PgBouncer (\d+\.\d+(?:\.\d+)?)/.exec(out.stdout ?? '')?.[1];
    if (version) return { binary, version };
  }
  return undefined;
}

/** PgBouncer refuses to run as root: it runs as the `postgres` OS user then (or nobody). */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string, fallback: number) =>
    Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim() || fallback);
  return { uid: id('-u', 65534), gid: id('-g', 65534) };
}

const quote = (value: string) => `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/**
 * A private PgBouncer in transaction pooling mode in front of the database of `databaseUrl`
 * (its own ini, log and port in a temp dir), ready to accept connections; undefined when
 * pgbouncer is not installed. A small server pool makes it really multiplex the clients'
 * transactions over few server connections, as in production.
 */
export async function startPgBouncer(databaseUrl: string, { poolSize = 5 } = {}): Promise<PgBouncer | undefined> {
  const found = findPgBouncer();
  if (!found) return undefined;
  const target = new URL(databaseUrl);
  const dbname = decodeURIComponent(target.pathname.slice(1));
  const user = decodeURIComponent(target.username || 'postgres');
  const password = decodeURIComponent(target.password);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'module-cache-pgbouncer-'));
  const server = [
    `host=${quote(target.hostname || '127.0.0.1')}`,
    `port=${target.port || 5432}`,
    `dbname=${quote(dbname)}`,
    `user=${quote(user)}`,
    ...(password ? [`password=${quote(password)}`] : []),
  ].join(' ');
  const [major, minor] = found.version.split('.').map(Number);
  const ini = [
    '[databases]',
    `${dbname} = ${server}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    // Clients are trusted (the proxy listens on loopback only); it logs in to the server with the entry's password.
    'auth_type = trust',
    `auth_file = ${join(dir, 'userlist.txt')}`,
    'pool_mode = transaction',
    'max_client_conn = 200',
    `default_pool_size = ${poolSize}`,
    'ignore_startup_parameters = extra_float_digits,application_name,options',
    `logfile = ${join(dir, 'pgbouncer.log')}`,
    // 1.21+ can keep named prepared statements; off, it behaves as the 1.18 this suite documents.
    ...(major > 1 || minor >= 21 ? ['max_prepared_statements = 0'] : []),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'pgbouncer.ini'), ini);
  // trust still requires the user to be listed.
  writeFileSync(join(dir, 'userlist.txt'), `"${user}" ""\n`);
  const owner = serverUser();
  if (owner) for (const file of ['', 'pgbouncer.ini', 'userlist.txt']) chownSync(join(dir, file), owner.uid, owner.gid);
  chmodSync(dir, 0o700);

  const child = spawn(found.binary, [join(dir, 'pgbouncer.ini')], { ...owner, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // A test process that dies without stop() must not leave a proxy behind.
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);

  const stop = async () => {
    process.removeListener('exit', kill);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM'); // immediate shutdown
      const timer = setTimeout(kill, 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  // Through PgBouncer end to end: this also proves it can log in to the server.
  await waitFor(
    async () => child.exitCode !== null || (await queryOnce(url.toString(), 'SELECT 1').then(() => true)),
    15_000,
    `pgbouncer on port ${port}`,
    50,
  ).catch(async (error: Error) => {
    await stop();
    throw new Error(`${error.message}\n${stderr}`);
  });
  if (child.exitCode !== null) {
    await stop();
    throw new Error(`pgbouncer exited with ${child.exitCode}:\n${stderr}`);
  }
  return { url: url.toString(), version: found.version, stop };
}
