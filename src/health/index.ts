/** `@module-cache/nestjs/health`: the @nestjs/terminus indicator (terminus is an optional peer dependency). */
export { ModuleCacheHealthIndicator } from './module-cache-health.indicator';
export type { ModuleCacheHealthOptions, ModuleCacheHealthReport } from '../observability/health';
