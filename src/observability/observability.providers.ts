import type { Provider } from '@nestjs/common';
import { ModuleCacheInvalidationListener } from '../listener/invalidation-listener';
import { CachingDefinitionLookup } from '../lookup/module-cache.service';
import { RESOLVED_MODULE_CACHE_OPTIONS } from '../module-cache.constants';
import type { ResolvedModuleCacheOptions } from '../config/options';
import { ModuleCacheHealth } from './health';
import { createModuleCacheMetrics, ModuleCacheMetrics } from './metrics';

export const observabilityProviders: Provider[] = [
  ModuleCacheHealth,
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
