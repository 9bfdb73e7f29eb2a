import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ModuleCacheModule, moduleCacheEntities, moduleCacheMigrations } from '../src';
import { ModuleCacheHealthIndicator } from '../src/health';
import { DefinitionsController } from './definitions.controller';
import { ServiceExceptionFilter } from './http-errors';
import { scopeForRealms } from './realm-layout';
import { RealmWatchService } from './realm-watch.service';
import { RealmsDefinitionSource } from './realms-definition-source';
import { RealmsService } from './realms.service';
import type { ServiceConfig } from './service-config';
import { ServiceController } from './service.controller';
import { SERVICE_CONFIG } from './service.tokens';

/** One worker's application: the cache over the realm folders, its HTTP surface, the realms it mounts, and (in one worker) the file watcher. */
@Module({})
export class AppModule {
  static forRoot(config: ServiceConfig & { databaseURL: string }): DynamicModule {
    return {
      module: AppModule,
      imports: [
        TypeOrmModule.forRoot({
          type: 'postgres',
          url: config.databaseURL,
          entities: moduleCacheEntities,
          // Listed so the DataSource knows them; the primary has already run them once, before
          // forking, because workers running them concurrently would race on the same DDL.
          migrations: moduleCacheMigrations,
          migrationsRun: false,
          applicationName: 'module-cache-service',
          // The primary just connected to this database: a worker that cannot should fail fast.
          retryAttempts: 2,
          retryDelay: 500,
        }),
        ModuleCacheModule.forRoot({
          // None up front: RealmsService registers each subfolder of REALMS_DIR, at start and as they appear.
          realms: [],
          source: new RealmsDefinitionSource(config),
          // A private realm (one with a `.private` file) caches per user, the others share `public`.
          scopeFor: scopeForRealms(config),
          // In prom-client's global registry: the one each worker's share of /metrics is collected from.
          metrics: true,
          // Relay mode: the primary's connection (LISTEN, claims) serves every worker of the host.
          listener: { relay: config.relay },
          consistency: config.consistency,
        }),
        TerminusModule,
      ],
      controllers: [DefinitionsController, ServiceController],
      providers: [
        { provide: SERVICE_CONFIG, useValue: config },
        // Every error in the library filter's body: ModuleCacheExceptionFilter for the library's own.
        { provide: APP_FILTER, useClass: ServiceExceptionFilter },
        RealmsService,
        RealmWatchService,
        ModuleCacheHealthIndicator,
      ],
    };
  }
}
