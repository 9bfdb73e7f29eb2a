import { ServiceUnavailableException } from '@nestjs/common';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { randomBytes } from 'node:crypto';
import { Registry, register as globalRegister, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { filter, firstValueFrom } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ModuleCacheInvalidationListener, type ListenerState, type ModuleCacheOptions } from '../../src';
import { ModuleCacheHealthIndicator } from '../../src/health';
import type { CacheApp } from '../support/app';
import { useCacheTestBed } from '../support/test-bed';
import { FakeSource } from '../support/fake-source';
import { startTcpProxy } from '../support/faults/tcp-proxy';
import { waitFor } from '../support/wait';

const REALM = 'https://example.test/obs/';
const bed = useCacheTestBed({ realms: [REALM] });

function uniqueName(label: string): string {
  return `mc-obs-${label}-${randomBytes(3).toString('hex')}`;
}

function start(options: Partial<ModuleCacheOptions> = {}, withTerminus = false): Promise<CacheApp> {
  const source = new FakeSource().define(`${REALM}a.gts`, ['./b']).define(`${REALM}b.gts`).define(`${REALM}c.gts`);
  return bed.start(
    { source, listener: { applicationName: uniqueName('app') }, ...options },
    withTerminus
      ? { imports: [TerminusModule], providers: [ModuleCacheHealthIndicator] }
      : { providers: [HealthIndicatorService, ModuleCacheHealthIndicator] },
  );
}

const closeApp = (cache: CacheApp): Promise<void> => bed.close(cache);

async function backends(applicationName: string): Promise<number> {
  return (await bed.db.query('SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND datname = $2', [applicationName, bed.db.name]))
    .length;
}

async function values(registry: Registry, name: string): Promise<MetricValue<string>[]> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`${name} is not registered`);
  return (await metric.get()).values;
}

/** One series of a metric: `series` is the sample name (e.g. `<histogram>_count`), labels must all match. */
async function value(registry: Registry, name: string, labels: Record<string, string> = {}, series = name): Promise<number | undefined> {
  const found = (await values(registry, name)).find(
    (v) => ((v as { metricName?: string }).metricName ?? name) === series && Object.entries(labels).every(([k, l]) => v.labels[k] === l),
  );
  return found?.value;
}

const ourMetrics = async (registry: Registry, prefix = 'module_cache_'): Promise<string[]> =>
  ((await registry.getMetricsAsJSON()) as MetricObjectWithValues<MetricValue<string>>[])
    .map((m) => m.name)
    .filter((n) => n.startsWith(prefix));

describe('ModuleCacheHealthIndicator', () => {
  it('is up with a listening listener, through a real terminus HealthCheckService', async () => {
    const { app } = await start({}, true);
    const health = app.get(HealthCheckService);
    const indicator = app.get(ModuleCacheHealthIndicator);
    const result = await health.check([() => indicator.isHealthy()]);
    expect(result.status).toBe('ok');
    const info = result.info?.['module-cache'];
    expect(info).toMatchObject({
      status: 'up',
      listener: 'listening',
      selfProbe: 'ok',
      maxNotifyQueueUsage: 0.5,
      hits: { memory: 0, table: 0 },
      computes: 0,
      discards: 0,
      reconnects: 0,
    });
    expect(info?.notifyQueueUsage).toBeGreaterThanOrEqual(0);
    expect(info?.notifyQueueUsage).toBeLessThan(0.5);
  });

  it('goes down when the listener backend is killed and up again after it reconnects', async () => {
    const applicationName = uniqueName('kill');
    // The listener connects through a proxy that can refuse new connections: "down" then lasts
    // for as long as the test looks at it, instead of for one jittered reconnect backoff.
    const proxy = await startTcpProxy(bed.db.url);
    try {
      const cache = await start(
        {
          listener: { applicationName, connection: { connectionString: proxy.url }, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } },
        },
        true,
      );
      const health = cache.app.get(HealthCheckService);
      const indicator = cache.app.get(ModuleCacheHealthIndicator);
      const listener = cache.app.get(ModuleCacheInvalidationListener);
      const states: ListenerState[] = [];
      listener.state$.subscribe((state) => states.push(state));
      await cache.lookup.lookup(`${REALM}c.gts`);
      expect((await health.check([() => indicator.isHealthy('cache')])).status).toBe('ok');

      proxy.refuse();
      const lost = firstValueFrom(listener.state$.pipe(filter((s) => s === 'reconnecting')));
      const killed = await bed.db.query<{ ok: boolean }>(
        'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND datname = $2',
        [applicationName, bed.db.name],
      );
      expect(killed).toEqual([{ ok: true }]);
      await lost;
      // A reconnect attempt was made and refused: the listener is down, and stays down until accept().
      await waitFor(() => proxy.refused >= 1, 10_000, 'a refused reconnect attempt');

      const down = await health.check([() => indicator.isHealthy('cache')]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(down).toBeInstanceOf(ServiceUnavailableException);
      const body = (down as ServiceUnavailableException).getResponse() as {
        status: string;
        error: Record<string, { status: string; listener: string; message: string }>;
      };
      expect(body.status).toBe('error');
      expect(body.error.cache.status).toBe('down');
      expect(body.error.cache.listener).toBe('reconnecting');
      expect(body.error.cache.message).toMatch(/invalidation listener is reconnecting, not listening/);

      const back = firstValueFrom(listener.state$.pipe(filter((s) => s === 'listening')));
      proxy.accept();
      await back;
      // Up once the new connection has proven delivery with its probe.
      const up = await waitFor(
        async () => {
          const result = await indicator.isHealthy('cache');
          return result.cache.status === 'up' ? result : undefined;
        },
        15_000,
        'the health check to report up after reconnect',
      );
      expect(up.cache).toMatchObject({ listener: 'listening', selfProbe: 'ok', reconnects: 1, computes: 1 });
      expect((await health.check([() => indicator.isHealthy('cache')])).status).toBe('ok');
      expect(states).toEqual(['listening', 'reconnecting', 'listening']);
      expect(await backends(applicationName)).toBe(1);

      await closeApp(cache);
      expect(await backends(applicationName)).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it("reports a disabled listener as up, and works with terminus's HealthIndicatorService alone (no TerminusModule)", async () => {
    const { app } = await start({ listener: false });
    const result = await app.get(ModuleCacheHealthIndicator).isHealthy();
    expect(result['module-cache']).toMatchObject({ status: 'up', listener: 'disabled', selfProbe: 'disabled' });
  });
});

describe('Prometheus metrics', () => {
  it('appear in a fresh registry after some lookups and agree with stats()', async () => {
    const registry = new Registry();
    const { lookup } = await start({ metrics: { registry }, dependencyErrors: 'compute' });
    await lookup.lookup(`${REALM}a.gts`); // computes a and its dependency b
    await lookup.lookup(`${REALM}a.gts`); // memory hit
    await lookup.lookup(`${REALM}c`); // computes c.gts
    const other = await start({ metrics: { registry } });
    await other.lookup.lookup(`${REALM}b.gts`); // table hit in the second instance
    await lookup.invalidate(`${REALM}b.gts`); // b, its variants and consumer a

    const stats = [lookup.stats(), other.lookup.stats()];
    const sum = (read: (s: (typeof stats)[number]) => number) => read(stats[0]) + read(stats[1]);
    expect(sum((s) => s.computes)).toBe(3);
    expect(await value(registry, 'module_cache_hits_total', { tier: 'memory' })).toBe(sum((s) => s.hits.memory));
    expect(await value(registry, 'module_cache_hits_total', { tier: 'table' })).toBe(sum((s) => s.hits.table));
    expect(await value(registry, 'module_cache_misses_total')).toBe(sum((s) => s.misses));
    expect(await value(registry, 'module_cache_computations_total')).toBe(sum((s) => s.computes));
    expect(await value(registry, 'module_cache_persisted_total')).toBe(sum((s) => s.persisted));
    expect(await value(registry, 'module_cache_notifications_sent_total')).toBe(sum((s) => s.notifications.sent));
    expect(await value(registry, 'module_cache_invalidations_total')).toBe(1);
    expect(await value(registry, 'module_cache_listener_listening')).toBe(2);
    expect(await value(registry, 'module_cache_discards_total', { reason: 'fenced-by-database' })).toBe(0);

    const latency = 'module_cache_lookup_duration_seconds';
    expect(await value(registry, latency, { outcome: 'hit-memory' }, `${latency}_count`)).toBe(sum((s) => s.hits.memory));
    expect(await value(registry, latency, { outcome: 'hit-table' }, `${latency}_count`)).toBe(sum((s) => s.hits.table));
    expect(await value(registry, latency, { outcome: 'computed' }, `${latency}_count`)).toBe(sum((s) => s.computes));

    const fanOut = 'module_cache_invalidation_fan_out_urls';
    expect(await value(registry, fanOut, {}, `${fanOut}_count`)).toBe(1);
    // b.gts's variants (b, b.gts, b.ts, b.gjs, b.js) plus its consumer a.gts.
    expect(await value(registry, fanOut, {}, `${fanOut}_sum`)).toBe(6);

    const text = await registry.metrics();
    expect(text).toContain('# TYPE module_cache_hits_total counter');
    expect(text).toContain('# TYPE module_cache_lookup_duration_seconds histogram');
  });

  it("counts a lookup coalesced with another instance's computation", async () => {
    const registry = new Registry();
    const source = new FakeSource().define(`${REALM}slow.gts`);
    const options = (label: string): Partial<ModuleCacheOptions> => ({
      source,
      listener: { applicationName: uniqueName(label) },
      metrics: { registry, prefix: 'co_' },
    });
    const computing = await bed.start(options('computing'));
    const waiting = await bed.start(options('waiting'));
    source.hold();
    const first = computing.lookup.lookup(`${REALM}slow.gts`);
    await waitFor(() => source.waiting === 1, 10_000, 'the computation to start');
    const second = waiting.lookup.lookup(`${REALM}slow.gts`);
    // Past its miss, the second instance either waits on the claim or finds the finished row on claiming: both are coalesced.
    await waitFor(() => waiting.lookup.stats().misses === 1, 10_000, 'the second lookup to miss');
    source.release();
    expect((await second)?.definitions).toEqual((await first)?.definitions);

    expect(await value(registry, 'co_computations_total')).toBe(1);
    expect(await value(registry, 'co_coalesced_waits_total')).toBe(1);
    expect(await value(registry, 'co_lookup_duration_seconds', { outcome: 'coalesced' }, 'co_lookup_duration_seconds_count')).toBe(1);
  });

  it('survives two instances on one registry: counters sum, stay monotonic, and vanish with the last instance', async () => {
    const registry = new Registry();
    const first = await start({ metrics: { registry, prefix: 'twice_' } });
    const second = await start({ metrics: { registry, prefix: 'twice_' } });
    await first.lookup.lookup(`${REALM}c.gts`);
    await first.lookup.lookup(`${REALM}c.gts`);
    await second.lookup.lookup(`${REALM}c.gts`);
    expect(await value(registry, 'twice_hits_total', { tier: 'memory' })).toBe(1);
    expect(await value(registry, 'twice_hits_total', { tier: 'table' })).toBe(1);

    await closeApp(first);
    expect(await value(registry, 'twice_hits_total', { tier: 'memory' })).toBe(1);
    expect(await value(registry, 'twice_computations_total')).toBe(1);
    await second.lookup.lookup(`${REALM}c.gts`);
    expect(await value(registry, 'twice_hits_total', { tier: 'memory' })).toBe(2);

    await closeApp(second);
    expect(await ourMetrics(registry, 'twice_')).toEqual([]);
  });

  it('registers on the global registry with metrics: true, and nothing with metrics: false', async () => {
    expect(await ourMetrics(globalRegister)).toEqual([]);
    const off = await start({ metrics: false });
    await off.lookup.lookup(`${REALM}c.gts`);
    expect(await ourMetrics(globalRegister)).toEqual([]);

    const on = await start({ metrics: true });
    await on.lookup.lookup(`${REALM}c.gts`);
    expect(await ourMetrics(globalRegister)).toContain('module_cache_hits_total');
    expect(await value(globalRegister, 'module_cache_hits_total', { tier: 'table' })).toBe(1);
    await closeApp(on);
    expect(await ourMetrics(globalRegister)).toEqual([]);
  });
});
