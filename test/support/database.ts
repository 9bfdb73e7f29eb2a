import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { queryOnce } from './pg';

export interface TestDatabase {
  url: string;
  name: string;
  /** Runs one statement on a short-lived connection. */
  query<T extends Record<string, unknown> = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

export function adminUrl(): string {
  return inject('adminDatabaseUrl');
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export function adminQuery<T extends Record<string, unknown>>(sql: string, params?: unknown[], url = adminUrl()): Promise<T[]> {
  return queryOnce<T>(url, sql, params);
}

/** A fresh database per test file, so files can run in parallel against one server. */
export async function createTestDatabase(admin = adminUrl()): Promise<TestDatabase> {
  const name = `mc_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`, [], admin);
  const url = withDatabase(admin, name);
  return {
    url,
    name,
    query: (sql, params) => adminQuery(sql, params, url),
    async drop() {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, [], admin);
    },
  };
}
