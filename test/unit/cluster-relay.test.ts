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
