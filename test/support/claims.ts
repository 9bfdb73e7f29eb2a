import type { TestDatabase } from './database';
import { waitFor } from './wait';

/**
 * Coalescing claims seen from the database: a claim attempt is a `pg_try_advisory_lock` on the
 * process's dedicated connection (named by `listener.applicationName`), which answers at once, so
 * nothing waits in the database while a process waits for a peer. What the database does keep is
 * the connection's last statement and when it started (pg_stat_activity): an idle connection whose
 * last statement is a claim attempt that started after `since` has finished that attempt.
 */

/** The database's clock (timestamps compared with it come from the same server). */
export async function databaseClock(db: Pick<TestDatabase, 'query'>): Promise<string> {
  const [{ now }] = await db.query<{ now: string }>(`SELECT clock_timestamp()::text AS now`);
  return now;
}

/** True when the dedicated connection `applicationName` finished a claim attempt that started after `since`. */
export async function claimAttemptedSince(
  db: Pick<TestDatabase, 'query' | 'name'>,
  applicationName: string,
  since: string,
): Promise<boolean> {
  const rows = await db.query(
    `SELECT 1 FROM pg_stat_activity
      WHERE datname = $1 AND application_name = $2 AND state = 'idle'
        AND query LIKE '%pg_try_advisory_lock%' AND query_start > $3::timestamptz`,
    [db.name, applicationName, since],
  );
  return rows.length === 1;
}

/**
 * Waits until every named dedicated connection finished a claim attempt started after `since`.
 * While one process holds the claim (its computation held at a gate), the others' attempts failed,
 * so they are past their first claim attempt and waiting to be woken.
 */
export async function waitForClaimAttempts(
  db: Pick<TestDatabase, 'query' | 'name'>,
  applicationNames: string[],
  since: string,
  what: string,
): Promise<void> {
  await waitFor(
    async () => (await Promise.all(applicationNames.map((name) => claimAttemptedSince(db, name, since)))).every(Boolean),
    20_000,
    what,
  );
}

/** True while some session holds a coalescing claim (a 64-bit advisory lock) in this database. */
export async function claimHeld(db: Pick<TestDatabase, 'query' | 'name'>): Promise<boolean> {
  const rows = await db.query(
    `SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
      WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND d.datname = $1`,
    [db.name],
  );
  return rows.length > 0;
}
