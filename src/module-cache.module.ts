import { Module } from '@nestjs/common';
import { ModuleCacheInvalidationListener } from './listener/invalidation-listener';
import { CachingDefinitionLookup } from './lookup/module-cache.service';
import { ConfigurableModuleCacheModule } from './module-cache.module-definition';
import { moduleCacheProviders } from './module-cache.providers';
import { ModuleCacheHealth } from './observability/health';
import { observabilityProviders } from './observability/observability.providers';

/**
 * `ModuleCacheModule.forRoot({ realms, source })` or `.forRootAsync({ imports, inject, useFactory })`.
 * Needs a TypeORM DataSource (TypeOrmModule) with `moduleCacheEntities` and `moduleCacheMigrations`.
 */
@Module({
  providers: [...moduleCacheProviders, CachingDefinitionLookup, ...observabilityProviders],
  exports: [CachingDefinitionLookup, ModuleCacheInvalidationListener, ModuleCacheHealth],
})
export class ModuleCacheModule extends ConfigurableModuleCacheModule {}
