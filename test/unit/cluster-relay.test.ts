import { describe, expect, it } from 'vitest';
import { ModuleCacheClusterRelay } from '../../src/cluster';
import { ModuleCacheOptionsError } from '../../src';
import { DEFAULTS } from '../../src/config/defaults';
import { clusterRelaySchema } from '../../src/config/listener';

describe('ModuleCacheClusterRelay options', () => {
  it('refuses a missing connection and channel names that are not plain identifiers', () => {
    expect(() => new ModuleCacheClusterRelay(undefined as never)).toThrow(ModuleCacheOptionsError);
    expect(() => new ModuleCacheClusterRelay({} as never)).toThrow(/connection is required/);
    expect(() => new ModuleCacheClusterRelay({ connection: {}, channel: 'bad"; drop' })).toThrow(/channel must match/);
    expect(() => new ModuleCacheClusterRelay({ connection: {}, ackChannel: 'Upper' })).toThrow(/ackChannel must match .* \(got "Upper"\)/);
  });

  it("LISTENs on the control channel too for workers in wireFormat 'seed', and refuses a channel whose control channel cannot fit", () => {
    const channels = (relay: ModuleCacheClusterRelay) => (relay as unknown as { channels: string[] }).channels;
    expect(channels(new ModuleCacheClusterRelay({ connection: {} }))).toEqual([
      'module_cache_invalidated',
      'module_cache_computed',
      'module_cache_acked',
    ]);
    expect(channels(new ModuleCacheClusterRelay({ connection: {}, wireFormat: 'seed' }))).toEqual([
      'module_cache_invalidated',
      'module_cache_invalidated__control',
      'module_cache_computed',
      'module_cache_acked',
    ]);
    expect(() => new ModuleCacheClusterRelay({ connection: {}, wireFormat: 'seed', channel: 'x'.repeat(60) })).toThrow(
      /channel with wireFormat 'boxel', .* exceeds Postgres's 63-byte identifier limit/,
    );
  });

  it("checks reconnect and queryTimeoutMs as the listener's options do", () => {
    expect(() => new ModuleCacheClusterRelay({ connection: {}, reconnect: { initialDelayMs: 5000, maxDelayMs: 100 } })).toThrow(
      /reconnect\.initialDelayMs must not exceed maxDelayMs/,
    );
    expect(() => new ModuleCacheClusterRelay({ connection: {}, queryTimeoutMs: 0 })).toThrow(/queryTimeoutMs/);
    expect(() => new ModuleCacheClusterRelay({ connection: {}, reconect: {} } as never)).toThrow(/reconect/);
  });

  it("takes its defaults from DEFAULTS (the listener's, but its own application name)", () => {
    expect(clusterRelaySchema.parse({ connection: {} })).toEqual({
      connection: {},
      channel: DEFAULTS.channel,
      computedChannel: DEFAULTS.computedChannel,
      ackChannel: DEFAULTS.ackChannel,
      wireFormat: DEFAULTS.wireFormat,
      applicationName: DEFAULTS.clusterRelay.applicationName,
      reconnect: DEFAULTS.listener.reconnect,
      queryTimeoutMs: DEFAULTS.listener.queryTimeoutMs,
    });
    expect(clusterRelaySchema.parse({ connection: {}, reconnect: { maxDelayMs: 500 } }).reconnect).toEqual({
      initialDelayMs: DEFAULTS.listener.reconnect.initialDelayMs,
      maxDelayMs: 500,
    });
  });
});
