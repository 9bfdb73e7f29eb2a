/**
 * The part of a prom-client `Registry` the metrics use. Structural, so that the library's types
 * never name prom-client (an optional peer dependency): pass a prom-client `Registry`.
 */
export interface MetricsRegistry {
  registerMetric(metric: never): void;
  getSingleMetric(name: string): unknown;
  removeSingleMetric(name: string): void;
}

/** `metrics` option: Prometheus metrics through prom-client (an optional peer dependency). */
export interface ModuleCacheMetricsOptions {
  /** Registry to register in; prom-client's global `register` when absent. */
  registry?: MetricsRegistry;
  /** Prefix of every metric name; `module_cache_` when absent. */
  prefix?: string;
}

export interface ResolvedMetricsOptions {
  registry?: MetricsRegistry;
  prefix: string;
}

export const DEFAULT_METRICS_PREFIX = 'module_cache_';

/** A metric name prefix Prometheus accepts (it may be empty). */
export const METRIC_PREFIX = /^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/;

/** Duck-typed, so that the options module never loads prom-client itself. */
export function isRegistryLike(value: unknown): value is MetricsRegistry {
  const r = value as Partial<Record<keyof MetricsRegistry, unknown>> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.registerMetric === 'function' &&
    typeof r.getSingleMetric === 'function' &&
    typeof r.removeSingleMetric === 'function'
  );
}

export function resolveMetricsOptions(value: boolean | ModuleCacheMetricsOptions): ResolvedMetricsOptions | false {
  if (value === false) return false;
  if (value === true) return { prefix: DEFAULT_METRICS_PREFIX };
  return { ...(value.registry ? { registry: value.registry } : {}), prefix: value.prefix ?? DEFAULT_METRICS_PREFIX };
}
