import { type INestApplicationContext, type ModuleMetadata } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CachingDefinitionLookup, ModuleCacheModule, moduleCacheEntities, moduleCacheMigrations, type ModuleCacheOptions } from '../../src';

/** Runs the library's migrations once on a database (apps in tests then start without racing them). */
export async function migrate(url: string): Promise<void> {
  const dataSource = new DataSource({ type: 'postgres', url, entities: moduleCacheEntities, migrations: moduleCacheMigrations });
  await dataSource.initialize();
  try {
    await dataSource.runMigrations();
  } finally {
    await dataSource.destroy();
  }
}

export interface CacheApp {
  app: INestApplicationContext;
  lookup: CachingDefinitionLookup;
  close(): Promise<void>;
}

/**
 * A Nest application context with TypeORM on `url` and ModuleCacheModule configured with `options`;
 * `extra.imports` and `extra.providers` are added to the root module (e.g. TerminusModule and the health indicator).
 */
export async function createCacheApp(
  url: string,
  options: ModuleCacheOptions,
  extra: Pick<ModuleMetadata, 'imports' | 'providers'> = {},
): Promise<CacheApp> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, entities: moduleCacheEntities, retryAttempts: 1, retryDelay: 100 }),
      ModuleCacheModule.forRoot(options),
      ...(extra.imports ?? []),
    ],
    providers: extra.providers ?? [],
  }).compile();
  moduleRef.enableShutdownHooks();
  const app = await moduleRef.init();
  return { app, lookup: app.get(CachingDefinitionLookup), close: () => app.close() };
}
