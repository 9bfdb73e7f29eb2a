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
