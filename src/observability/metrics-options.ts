import type { Registry } from 'prom-client';

/** `metrics` option: Prometheus metrics through prom-client (an optional peer dependency). */
export interface ModuleCacheMetricsOptions {
  /** Registry to register in; prom-client's global `register` when absent. */
  registry?: Registry;
  /** Prefix of every metric name; `module_cache_` when absent. */
  prefix?: string;
}

export interface ResolvedMetricsOptions {
  registry?: Registry;
  prefix: string;
}

export const DEFAULT_METRICS_PREFIX = 'module_cache_';

/** A metric name prefix Prometheus accepts (it may be empty). */
export const METRIC_PREFIX = /^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/;

/** Duck-typed, so that the options module never loads prom-client itself. */
export function isRegistryLike(value: unknown): value is Registry {
  const r = value as Partial<Record<keyof Registry, unknown>> | null;
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
