import { Client } from 'pg';
import type { TestDatabase } from './database';

/**
 * Postgres backends as test instruments: find one by application_name, freeze it (SIGSTOP: what a
 * half-open socket or a stalled server looks like to its client), count lock waits. Signalling a
 * backend needs the server on this machine and the right to signal its processes.
 */
export async function backendPid(db: Pick<TestDatabase, 'query' | 'name'>, applicationName: string): Promise<number> {
  const rows = await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = $2`, [
    applicationName,
    db.name,
  ]);
  if (rows.length !== 1) throw new Error(`expected one backend named ${applicationName}, found ${rows.length}`);
  return rows[0].pid;
}

/** True when this process may signal the database's backends (a local server, and root or its owner). */
export async function signalsBackends(db: Pick<TestDatabase, 'url'>): Promise<boolean> {
  const client = new Client({ connectionString: db.url });
  await client.connect();
  try {
    const [{ pid }] = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows;
    process.kill(pid, 0);
    return true;
  } catch {
    process.stdout.write("[backends] cannot signal the database server's processes (remote server or no permission): skipping\n");
    return false;
  } finally {
    await client.end();
  }
}

/** Runs `work` with the backend `pid` stopped, and resumes it afterwards whatever happens. */
export async function frozen<T>(pid: number, work: () => Promise<T>): Promise<T> {
  process.kill(pid, 'SIGSTOP');
  try {
    return await work();
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

/** Backends of this database waiting for a lock of the given kind ('advisory', 'transactionid', 'tuple', …). */
export async function lockWaits(db: Pick<TestDatabase, 'query' | 'name'>, kind: string): Promise<number> {
  const rows = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event = $2`,
    [db.name, kind],
  );
  return rows[0].n;
}
