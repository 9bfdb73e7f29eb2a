import { HealthIndicatorService } from '@nestjs/terminus';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ModuleCacheHealthIndicator } from '../../src/health';
import { ModuleCacheHealth } from '../../src/observability/health';
import type { ListenerProbe, ListenerState, ModuleCacheInvalidationListener } from '../../src/listener/invalidation-listener';
import type { CachingDefinitionLookup } from '../../src/lookup/module-cache.service';
import { resolveModuleCacheOptions } from '../../src/config/options';
import { emptyStats } from '../../src/events/events';
import type { InvalidationStore } from '../../src/persistence/invalidations';
import { Recorder } from '../../src/events/recorder';

const lookup = { stats: () => ({ ...emptyStats(), computes: 3, reconnects: 1 }) } as unknown as CachingDefinitionLookup;

function indicator(
  opts: { state?: ListenerState; probe?: ListenerProbe; usage?: () => Promise<number>; listener?: false; recorder?: Recorder } = {},
) {
  const repository = { notifyQueueUsage: opts.usage ?? (async () => 0.01) } as unknown as InvalidationStore;
  const listener =
    opts.listener === false
      ? null
      : ({ state: opts.state ?? 'listening', probe: opts.probe ?? { ok: true } } as unknown as ModuleCacheInvalidationListener);
  return new ModuleCacheHealthIndicator(
    new HealthIndicatorService(),
    new ModuleCacheHealth(lookup, repository, opts.recorder ?? new Recorder(), listener),
  );
}

describe('ModuleCacheHealthIndicator (fakes)', () => {
  it('is up when listening, probed and the queue is nearly empty; reports a few stats', async () => {
    const result = await indicator().isHealthy();
    expect(result['module-cache']).toEqual({
      status: 'up',
      fence: 'ok',
      fenceBusy: { persists: 0, invalidations: 0 },
      listener: 'listening',
      selfProbe: 'ok',
      notifyQueueUsage: 0.01,
      maxNotifyQueueUsage: 0.5,
      hits: { memory: 0, table: 0 },
      computes: 3,
      discards: 0,
      reconnects: 1,
    });
  });

  it('says degraded, still up, while the fence was busy in the last 10 s', async () => {
    const recorder = new Recorder();
    const health = new ModuleCacheHealth(lookup, { notifyQueueUsage: async () => 0 } as unknown as InvalidationStore, recorder, null);
    expect((await health.check()).degraded).toBe(false);
    recorder.record({ type: 'fence-busy', what: 'persist' });
    const report = await health.check();
    expect(report).toMatchObject({ healthy: true, degraded: true, details: { fence: 'busy' } });
    expect(report.warnings[0]).toMatch(/fence was busy/);
    expect(recorder.counters().fenceBusy).toEqual({ persists: 1, invalidations: 0 });
  });

  it('is down with the reason when the self-probe failed', async () => {
    const result = await indicator({ probe: { ok: false, reason: 'its own NOTIFY did not arrive within 5000 ms' } }).isHealthy('mc');
    expect(result.mc).toMatchObject({
      status: 'down',
      selfProbe: 'failed',
      selfProbeError: 'its own NOTIFY did not arrive within 5000 ms',
      message: 'self-probe failed: its own NOTIFY did not arrive within 5000 ms',
    });
  });

  it('treats a probe still running as pending, not as a failure', async () => {
    expect((await indicator({ probe: { ok: undefined } }).isHealthy())['module-cache']).toMatchObject({
      status: 'up',
      selfProbe: 'pending',
    });
  });

  it('is down while the listener reconnects', async () => {
    const result = await indicator({ state: 'reconnecting' }).isHealthy();
    expect(result['module-cache']).toMatchObject({ status: 'down', listener: 'reconnecting' });
    expect(result['module-cache'].message).toMatch(/listener is reconnecting/);
  });

  it('is down above the notify queue limit (default 0.5, configurable)', async () => {
    const full = indicator({ usage: async () => 0.6 });
    expect((await full.isHealthy())['module-cache']).toMatchObject({ status: 'down', notifyQueueUsage: 0.6 });
    expect((await full.isHealthy())['module-cache'].message).toMatch(/NOTIFY queue is 60\.0% full \(limit 50%\)/);
    expect((await full.isHealthy('module-cache', { maxNotifyQueueUsage: 0.7 }))['module-cache'].status).toBe('up');
    await expect(full.isHealthy('module-cache', { maxNotifyQueueUsage: 2 })).rejects.toThrow(
      /maxNotifyQueueUsage: must be between 0 and 1/,
    );
  });

  it('is down when the queue usage cannot be read, or not in time', async () => {
    const failing = indicator({ usage: async () => Promise.reject(new Error('connection refused')) });
    expect((await failing.isHealthy())['module-cache']).toMatchObject({
      status: 'down',
      notifyQueueUsage: null,
      message: 'pg_notification_queue_usage() failed: connection refused',
    });
    const hanging = indicator({ usage: () => new Promise<number>(() => undefined) });
    expect((await hanging.isHealthy('module-cache', { timeoutMs: 20 }))['module-cache'].message).toMatch(/no answer within 20 ms/);
  });

  it('reports a disabled listener as up', async () => {
    expect((await indicator({ listener: false }).isHealthy())['module-cache']).toMatchObject({
      status: 'up',
      listener: 'disabled',
      selfProbe: 'disabled',
    });
  });
});

describe('metrics option', () => {
  const base = { realms: ['https://a.test/r/'], source: { load: async () => null } };

  it('defaults to off; true means the global registry with the default prefix', () => {
    expect(resolveModuleCacheOptions(base).metrics).toBe(false);
    expect(resolveModuleCacheOptions({ ...base, metrics: true }).metrics).toEqual({ prefix: 'module_cache_' });
    const registry = new Registry();
    const resolved = resolveModuleCacheOptions({ ...base, metrics: { registry, prefix: 'x_' } }).metrics;
    expect(resolved).toEqual({ registry, prefix: 'x_' });
    expect(resolved && resolved.registry).toBe(registry);
  });

  it.each([
    ['yes', /metrics: must be true, false or \{ registry\?, prefix\? \}/],
    [{ registry: {} }, /metrics\.registry: must be a prom-client Registry/],
    [{ prefix: 'bad-prefix' }, /metrics\.prefix: must be a Prometheus metric name prefix/],
    [{ registy: new Registry() }, /metrics: Unrecognized key: "registy"/],
  ])('rejects %j with a message naming the option', (metrics, message) => {
    expect(() => resolveModuleCacheOptions({ ...base, metrics })).toThrow(message);
  });
});
