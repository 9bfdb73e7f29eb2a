import { Client } from 'pg';

/** Runs one statement on a short-lived connection to `url` (no Vitest needed: benchmarks use it too). */
export async function queryOnce<T extends Record<string, unknown>>(url: string, sql: string, params?: unknown[]): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Runs `work` and counts the statements sent to the server meanwhile by any `pg` client in this
 * process (measured from the outside: the library keeps no such counter).
 */
export async function countStatements<T>(work: () => Promise<T>): Promise<{ result: T; statements: number }> {
  const original = Client.prototype.query;
  let statements = 0;
  Client.prototype.query = function (this: Client, ...args: unknown[]) {
    statements++;
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
  try {
    return { result: await work(), statements };
  } finally {
    Client.prototype.query = original;
  }
}
