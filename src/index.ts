export * from './types';
export * from './errors';
export { MODULE_CACHE_INVALIDATED_CHANNEL, MODULE_CACHE_COMPUTED_CHANNEL, DEFINITION_SOURCE } from './module-cache.constants';
export type { ModuleCacheOptions, ListenerOptions } from './config/options';
export { ModuleCacheModule } from './module-cache.module';
export { MODULE_CACHE_OPTIONS } from './module-cache.module-definition';
export { CachingDefinitionLookup } from './lookup/module-cache.service';
export { ModuleCacheInvalidationListener, type ListenerState } from './listener/invalidation-listener';
export { encodeInvalidations, parseInvalidation, MAX_PAYLOAD_BYTES } from './wire/invalidation';
export type { InvalidationMessage, InvalidationTarget, ParseResult } from './wire/invalidation';
export type { ModuleCacheEvent, ModuleCacheStats, CacheTier, PrewarmOutcome } from './events/events';
export { TRACING_CHANNELS, type TracingChannelName } from './events/tracing';
export { ModuleCacheHealth, type ModuleCacheHealthOptions, type ModuleCacheHealthReport } from './observability/health';
export type { ModuleCacheMetricsOptions } from './config/metrics';
export { moduleCacheEntities, moduleCacheMigrations } from './persistence';
export {
  ModuleCacheExceptionFilter,
  MODULE_CACHE_HTTP_STATUS,
  moduleCacheHttpStatus,
  moduleCacheErrorBody,
  type ModuleCacheErrorBody,
} from './module-cache-exception.filter';
