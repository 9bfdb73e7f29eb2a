import { Module } from '@nestjs/common';
import { ModuleCacheInvalidationListener } from './broadcast/invalidation-listener';
import { CachingDefinitionLookup } from './lookup/caching-definition-lookup';
import { ConfigurableModuleCacheModule } from './module-cache.module-definition';
import { moduleCacheProviders } from './module-cache.providers';
import { ModuleCacheHealthIndicator } from './observability/health.indicator';
import { observabilityProviders } from './observability/observability.providers';

/**
 * `ModuleCacheModule.forRoot({ realms, source })` or `.forRootAsync({ imports, inject, useFactory })`.
 * Needs a TypeORM DataSource (TypeOrmModule) with `moduleCacheEntities` and `moduleCacheMigrations`.
 */
@Module({
  providers: [...moduleCacheProviders, CachingDefinitionLookup, ...observabilityProviders],
  exports: [CachingDefinitionLookup, ModuleCacheInvalidationListener, ModuleCacheHealthIndicator],
})
export class ModuleCacheModule extends ConfigurableModuleCacheModule {}
