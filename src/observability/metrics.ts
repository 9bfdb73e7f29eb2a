import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Observable, Subscription } from 'rxjs';
import { ModuleCacheOptionsError } from '../errors';
import { messages } from '../messages';
import { DISCARD_REASONS, type ModuleCacheEvent, type ModuleCacheStats } from '../events/events';
import type { ResolvedMetricsOptions } from '../config/metrics';
import { describeError } from '../describe-error';

type PromClient = typeof import('prom-client');
type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

/** What one cache instance (one ModuleCacheModule in one app) contributes to the metrics. */
export interface MetricsSource {
  readonly events$: Observable<ModuleCacheEvent>;
  stats(): ModuleCacheStats;
  /** undefined when the listener is disabled. */
  listening(): boolean | undefined;
}

/** Counters kept by stats(): read at scrape time, so they always agree with stats(). */
const STAT_COUNTERS: { name: string; help: string; read(s: ModuleCacheStats): number }[] = [
  { name: 'misses_total', help: 'Lookups that found the module neither in memory nor in the table', read: (s) => s.misses },
  { name: 'computations_total', help: 'Source computations that produced a module (errored modules included)', read: (s) => s.computes },
  { name: 'persisted_total', help: 'Computed entries written to the table', read: (s) => s.persisted },
  { name: 'retries_total', help: 'Computations retried after being discarded', read: (s) => s.retries },
  { name: 'coalesced_waits_total', help: "Lookups served by waiting for a peer process's computation", read: (s) => s.coalescedWaits },
  {
    name: 'coalesce_takeovers_total',
    help: 'Claims taken over from a peer that died or let go without a result',
    read: (s) => s.takeovers,
  },
  { name: 'source_errors_total', help: 'Source calls that threw or timed out', read: (s) => s.sourceErrors },
  {
    name: 'uncoordinated_computations_total',
    help: 'Lookups computed without cross-process coalescing because claims were unavailable',
    read: (s) => s.uncoordinated,
  },
  {
    name: 'served_unpersisted_total',
    help: 'Lookups answered with a result none of whose attempts could be stored (churn)',
    read: (s) => s.servedUnpersisted,
  },
  { name: 'invalidations_total', help: 'Local invalidations (module, realm or global)', read: (s) => s.invalidations },
  { name: 'notifications_sent_total', help: 'Invalidation payloads NOTIFYed to peers', read: (s) => s.notifications.sent },
  {
    name: 'notifications_received_total',
    help: 'Valid invalidation payloads received from the channel',
    read: (s) => s.notifications.received,
  },
  {
    name: 'notifications_rejected_total',
    help: 'Payloads on the channel rejected as malformed or unsigned',
    read: (s) => s.notifications.rejected,
  },
  { name: 'listener_reconnects_total', help: 'Times the LISTEN connection was re-established', read: (s) => s.reconnects },
  {
    name: 'resyncs_targeted_total',
    help: 'Reconnects that replayed the fence log and evicted only what it touched',
    read: (s) => s.resyncs.targeted,
  },
  {
    name: 'resyncs_full_total',
    help: 'Full resyncs (memory cleared): first connect, fence log pruned past the last sequence, or a failed replay',
    read: (s) => s.resyncs.full,
  },
];
const TIERS = ['memory', 'table'] as const;
const LATENCY_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120];
const FAN_OUT_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 1_000, 5_000, 25_000];

/** One set of metrics per (registry, prefix), shared by every cache instance registered there. */
const sharedSets = new WeakMap<Registry, Map<string, SharedMetrics>>();

/**
 * The metrics of every cache instance on one registry. Several app instances in one process
 * (tests, or two modules) share them: counters sum over the instances, and what a closed
 * instance counted is kept so that counters never go down while another one lives.
 */
class SharedMetrics {
  private readonly logger = new Logger('ModuleCacheMetrics');
  private readonly sources = new Set<MetricsSource>();
  private readonly retired = new Map<string, number>();
  private readonly metrics: AnyMetric[] = [];
  private readonly latency: Histogram<'outcome'>;
  private readonly fanOut: Histogram<string>;
  private readonly discards: Counter<'reason'>;

  constructor(
    prom: PromClient,
    private readonly registry: Registry,
    private readonly prefix: string,
  ) {
    // collect() runs with `this` bound to the metric: reach the sources through these.
    const total = (key: string, read: (s: ModuleCacheStats) => number) => this.total(key, read);
    const live = (read: (s: MetricsSource) => number) => this.live(read);
    const name = (n: string) => `${prefix}${n}`;
    for (const def of STAT_COUNTERS) {
      this.metrics.push(
        new prom.Counter({
          name: name(def.name),
          help: def.help,
          registers: [],
          collect() {
            this.reset();
            this.inc(total(def.name, def.read));
          },
        }),
      );
    }
    this.metrics.push(
      new prom.Counter({
        name: name('hits_total'),
        help: 'Lookups served from a cache tier',
        labelNames: ['tier'],
        registers: [],
        collect() {
          this.reset();
          for (const tier of TIERS)
            this.inc(
              { tier },
              total(`hits_${tier}`, (s) => s.hits[tier]),
            );
        },
      }),
      new prom.Gauge({
        name: name('hit_ratio'),
        help: 'Share of lookups served by each tier since start (hits of the tier / (hits + misses))',
        labelNames: ['tier'],
        registers: [],
        // Summing ratios across cluster workers (prom-client's AggregatorRegistry) is meaningless.
        aggregator: 'average',
        collect() {
          const hits = TIERS.map((tier) => total(`hits_${tier}`, (s) => s.hits[tier]));
          const all = hits[0] + hits[1] + total('misses_total', (s) => s.misses);
          TIERS.forEach((tier, i) => this.set({ tier }, all === 0 ? 0 : hits[i] / all));
        },
      }),
      new prom.Gauge({
        name: name('in_flight_computations'),
        help: 'Computations running in this process',
        registers: [],
        collect() {
          this.set(live((s) => s.stats().inFlight));
        },
      }),
      new prom.Gauge({
        name: name('memory_entries'),
        help: 'Entries held in the memory tier',
        registers: [],
        collect() {
          this.set(live((s) => s.stats().memoryEntries));
        },
      }),
      new prom.Gauge({
        name: name('listener_listening'),
        help: 'Invalidation listeners currently LISTENing (0 while one reconnects)',
        registers: [],
        collect() {
          this.set(live((s) => (s.listening() ? 1 : 0)));
        },
      }),
    );
    this.discards = new prom.Counter({
      name: name('discards_total'),
      help: 'Computations discarded because the module was invalidated while they ran',
      labelNames: ['reason'],
      registers: [],
    });
    for (const reason of DISCARD_REASONS) this.discards.inc({ reason }, 0);
    this.latency = new prom.Histogram({
      name: name('lookup_duration_seconds'),
      help:
        'Lookup latency by outcome: hit-memory, hit-table and coalesced (woken by a peer) from the call to the result; ' +
        'computed is the source computation of the module, the part that dominates a computed lookup',
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS,
      registers: [],
    });
    this.fanOut = new prom.Histogram({
      name: name('invalidation_fan_out_urls'),
      help: 'URLs invalidated per module invalidation (the module, its variants and its transitive consumers)',
      buckets: FAN_OUT_BUCKETS,
      registers: [],
    });
    this.metrics.push(this.discards, this.latency, this.fanOut);
  }

  static for(prom: PromClient, registry: Registry, prefix: string): SharedMetrics {
    let byPrefix = sharedSets.get(registry);
    if (!byPrefix) sharedSets.set(registry, (byPrefix = new Map()));
    let set = byPrefix.get(prefix);
    if (!set) byPrefix.set(prefix, (set = new SharedMetrics(prom, registry, prefix)));
    return set;
  }

  attach(source: MetricsSource): void {
    this.sources.add(source);
    this.ensureRegistered();
  }

  detach(source: MetricsSource): void {
    if (!this.sources.delete(source)) return;
    const final = source.stats();
    for (const def of STAT_COUNTERS) this.retire(def.name, def.read(final));
    for (const tier of TIERS) this.retire(`hits_${tier}`, final.hits[tier]);
    if (this.sources.size > 0) return;
    for (const metric of this.metrics) {
      if (this.registry.getSingleMetric(metricName(metric)) === metric) this.registry.removeSingleMetric(metricName(metric));
    }
    sharedSets.get(this.registry)?.delete(this.prefix);
  }

  observe(event: ModuleCacheEvent): void {
    switch (event.type) {
      case 'hit':
        this.latency.observe({ outcome: `hit-${event.tier}` }, event.durationMs / 1_000);
        break;
      case 'coalesced':
        this.latency.observe({ outcome: 'coalesced' }, event.durationMs / 1_000);
        break;
      case 'computed':
        this.latency.observe({ outcome: 'computed' }, event.durationMs / 1_000);
        break;
      case 'discarded':
        this.discards.inc({ reason: event.reason });
        break;
      case 'invalidated':
        if (event.kind === 'module') this.fanOut.observe(event.urls.length);
        break;
    }
  }

  private total(key: string, read: (s: ModuleCacheStats) => number): number {
    return (this.retired.get(key) ?? 0) + this.live((s) => read(s.stats()));
  }

  private live(read: (s: MetricsSource) => number): number {
    let sum = 0;
    for (const source of this.sources) sum += read(source);
    return sum;
  }

  private retire(key: string, value: number): void {
    this.retired.set(key, (this.retired.get(key) ?? 0) + value);
  }

  /** Registers what is missing; a foreign metric with one of our names is replaced (once, with a warning). */
  private ensureRegistered(): void {
    const replaced: string[] = [];
    for (const metric of this.metrics) {
      const name = metricName(metric);
      const existing = this.registry.getSingleMetric(name);
      if (existing === metric) continue;
      if (existing) {
        this.registry.removeSingleMetric(name);
        replaced.push(name);
      }
      this.registry.registerMetric(metric);
    }
    if (replaced.length) this.logger.warn(`replaced metrics already registered under our names: ${replaced.join(', ')}`);
  }
}

function metricName(metric: AnyMetric): string {
  return (metric as unknown as { name: string }).name;
}

/** Subscribes one cache instance to its registry's metrics; closed with the application. */
export class ModuleCacheMetrics implements OnApplicationShutdown {
  private readonly subscription: Subscription;
  private closed = false;

  constructor(
    private readonly shared: SharedMetrics,
    private readonly source: MetricsSource,
  ) {
    shared.attach(source);
    this.subscription = source.events$.subscribe((event) => shared.observe(event));
  }

  onApplicationShutdown(): void {
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.subscription.unsubscribe();
    this.shared.detach(this.source);
  }
}

/** null when metrics are off; loads prom-client (an optional peer dependency) only when they are on. */
export async function createModuleCacheMetrics(
  options: ResolvedMetricsOptions | false,
  source: MetricsSource,
): Promise<ModuleCacheMetrics | null> {
  if (options === false) return null;
  let prom: PromClient;
  try {
    prom = await import('prom-client');
  } catch (error) {
    throw new ModuleCacheOptionsError(messages.promClientMissing(describeError(error)), { cause: error });
  }
  return new ModuleCacheMetrics(
    SharedMetrics.for(prom, (options.registry as Registry | undefined) ?? prom.register, options.prefix),
    source,
  );
}
