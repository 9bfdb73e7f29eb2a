import { describe, expect, it } from 'vitest';
import { ModuleCacheClusterRelay } from '../../src/cluster';
import { ModuleCacheOptionsError } from '../../src';

describe('ModuleCacheClusterRelay options', () => {
  it('refuses a missing connection and channel names that are not plain identifiers', () => {
    expect(() => new ModuleCacheClusterRelay(undefined as never)).toThrow(ModuleCacheOptionsError);
    expect(() => new ModuleCacheClusterRelay({} as never)).toThrow(/connection is required/);
    expect(() => new ModuleCacheClusterRelay({ connection: {}, channel: 'bad"; drop' })).toThrow(/channel must match/);
    expect(() => new ModuleCacheClusterRelay({ connection: {}, ackChannel: 'Upper' })).toThrow(/ackChannel must match/);
  });
});
