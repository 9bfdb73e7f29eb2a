import type { Provider } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ModuleCacheInvalidationListener } from '../broadcast/invalidation-listener';
import { CachingDefinitionLookup } from '../lookup/caching-definition-lookup';
import { RESOLVED_MODULE_CACHE_OPTIONS } from '../module-cache.constants';
import type { ResolvedModuleCacheOptions } from '../module-cache.options';
import { ModuleCacheHealthIndicator } from './health.indicator';
import { createModuleCacheMetrics, ModuleCacheMetrics } from './metrics';

export const observabilityProviders: Provider[] = [
  // Terminus's result builder has no dependencies: providing it here spares apps that never
  // check health from importing TerminusModule, and apps that do need nothing more.
  HealthIndicatorService,
  ModuleCacheHealthIndicator,
  {
    provide: ModuleCacheMetrics,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, CachingDefinitionLookup, ModuleCacheInvalidationListener],
    useFactory: (options: ResolvedModuleCacheOptions, lookup: CachingDefinitionLookup, listener: ModuleCacheInvalidationListener | null) =>
      createModuleCacheMetrics(options.metrics, {
        events$: lookup.events$,
        stats: () => lookup.stats(),
        listening: () => (listener ? listener.state === 'listening' : undefined),
      }),
  },
];
