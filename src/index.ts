export * from './types';
export * from './errors';
export { MODULE_CACHE_INVALIDATED_CHANNEL, DEFINITION_SOURCE } from './module-cache.constants';
export type { ModuleCacheOptions, ListenerOptions } from './module-cache.options';
