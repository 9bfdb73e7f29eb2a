import type { ModuleMetadata } from '@nestjs/common';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { ModuleCacheOptions } from '../../src';
import { createCacheApp, migrate, type CacheApp } from './app';
import { createTestDatabase, type TestDatabase } from './database';

export interface CacheTestBed {
  /** This file's own migrated database (set in beforeAll). */
  readonly db: TestDatabase;
  /** Starts an app with `defaults` overridden by `options`; closed after each test. */
  start(options: Partial<ModuleCacheOptions>, extra?: Pick<ModuleMetadata, 'imports' | 'providers'>): Promise<CacheApp>;
  /** Closes one app early (it is then not closed again after the test). */
  close(app: CacheApp): Promise<void>;
}

/** Registers the hooks of a file that tests apps on its own database: create+migrate, close apps and empty the table, drop. */
export function useCacheTestBed(defaults: ModuleCacheOptions): CacheTestBed {
  const apps: CacheApp[] = [];
  let db: TestDatabase | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    await migrate(db.url);
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
    await db?.query('DELETE FROM module_cache_entries');
  });
  afterAll(async () => {
    await db?.drop();
  });
  return {
    get db() {
      if (!db) throw new Error('the test bed database exists only inside tests and hooks');
      return db;
    },
    async start(options, extra = {}) {
      const app = await createCacheApp(this.db.url, { ...defaults, ...options }, extra);
      apps.push(app);
      return app;
    },
    async close(app) {
      apps.splice(apps.indexOf(app), 1);
      await app.close();
    },
  };
}
