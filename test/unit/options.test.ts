import { describe, expect, it } from 'vitest';
import { ModuleCacheOptionsError } from '../../src';
import { DEFAULTS } from '../../src/config/defaults';
import { controlChannelFor, resolveModuleCacheOptions } from '../../src/config/options';

const source = { load: async () => null };

describe('option validation', () => {
  it('fills defaults', () => {
    const o = resolveModuleCacheOptions({ realms: ['https://a.test/r/'], source });
    expect(o).toMatchObject({
      channel: 'module_cache_invalidated',
      extensions: ['.gts', '.ts', '.gjs', '.js'],
      errorTtlMs: 30_000,
      memory: { maxEntries: 10_000 },
      coalesceAcrossProcesses: true,
      listener: { applicationName: 'module-cache-listener' },
    });
  });

  it('takes every default from DEFAULTS, as copies (DEFAULTS itself cannot change)', () => {
    const a = resolveModuleCacheOptions({ source });
    const b = resolveModuleCacheOptions({ source });
    expect(a).toMatchObject({ maxRetries: DEFAULTS.maxRetries, fenceRetentionMs: DEFAULTS.fenceRetentionMs });
    expect(a.listener).toEqual(DEFAULTS.listener);
    expect(a.memory).toEqual(DEFAULTS.memory);
    expect(a.extensions).toEqual(DEFAULTS.extensions);
    expect(a.listener).not.toBe(b.listener);
    if (a.listener === false || b.listener === false) throw new Error('listener defaults to an object');
    expect(a.listener.reconnect).not.toBe(b.listener.reconnect);
    expect(a.extensions).not.toBe(b.extensions);
    expect(Object.isFrozen(DEFAULTS.listener.reconnect) && Object.isFrozen(DEFAULTS.extensions)).toBe(true);
  });

  it("resolves the deprecated wireFormat 'seed' to 'boxel'", () => {
    expect(resolveModuleCacheOptions({ source, wireFormat: 'seed' }).wireFormat).toBe('boxel');
    expect(resolveModuleCacheOptions({ source, wireFormat: 'boxel' }).wireFormat).toBe('boxel');
    expect(resolveModuleCacheOptions({ source }).wireFormat).toBe('module-cache');
  });

  it("beats faster under consistency: 'strong' unless the heartbeat is given", () => {
    const strong = resolveModuleCacheOptions({ source, consistency: 'strong' });
    expect(strong.listener !== false && strong.listener.heartbeat).toEqual(DEFAULTS.strongHeartbeat);
    const given = resolveModuleCacheOptions({ source, consistency: 'strong', leaseMs: 30_000, listener: { heartbeat: {} } });
    expect(given.listener !== false && given.listener.heartbeat).toEqual(DEFAULTS.listener.heartbeat);
  });

  it.each([
    [{ realms: [], wireFormat: 'boxel', signingSecret: 'sixteen-chars-ok' }, /wireFormat: 'boxel' payloads carry no signature/],
    [{ realms: [], wireFormat: 'seed', signingSecret: 'sixteen-chars-ok' }, /wireFormat: 'boxel' payloads carry no signature/],
    [{ realms: [], prefixes: { 'https://a.test/': 'https://b.test/' } }, /prefixes\.https:\/\/a\.test\/: keys must be prefix identifiers/],
    [{ realms: [], prefixes: { '@a/b/': 'not-a-url/' } }, /prefixes\.@a\/b\/: must be an absolute http\(s\) URL/],
    [{ realms: [], dependencyErrors: 'eager' }, /dependencyErrors/],
    [{ realms: [], maxErrorBytes: 10 }, /maxErrorBytes/],
    [{ realms: [], listener: { relay: true, connection: { host: 'db' } } }, /listener\.connection: the relay connects for the workers/],
    [{ realms: [], listener: { relay: 'yes' } }, /listener\.relay/],
    [{ realms: [], scopeFor: 'public' }, /scopeFor: must be a function/],
    [{ realms: ['https://a.test/r'] }, /realms\.0: must be an absolute http\(s\) URL ending with "\/"/],
    [{ realms: ['not a url/'] }, /realms\.0/],
    [{ realms: ['file:///srv/realm/'] }, /realms\.0: must be an absolute http\(s\) URL/],
    [{ realms: ['https://a.test/r/'], channel: 'bad-channel"; DROP TABLE x; --' }, /channel: must match/],
    [{ realms: ['https://a.test/r/'], errorTtlMs: -1 }, /errorTtlMs/],
    [{ realms: ['https://a.test/r/'], memory: { maxEntries: 0 } }, /memory\.maxEntries/],
    [{ realms: ['https://a.test/r/'], extensions: ['ts'] }, /extensions\.0: each must look like "\.ts"/],
    [{ realms: ['https://a.test/r/'], source: { nope: true } }, /source: must be an object with a load/],
    [{ realms: ['https://a.test/r/'], signingSecret: 'short' }, /signingSecret: must be at least 16 characters/],
    [
      { realms: ['https://a.test/r/'], listener: { reconnect: { initialDelayMs: 5000, maxDelayMs: 100 } } },
      /listener\.reconnect\.initialDelayMs/,
    ],
    [{ realms: ['https://a.test/r/'], sourceTimeoutMs: 600_000 }, /fenceRetentionMs: must exceed/],
    [{ realms: ['https://a.test/r/'], typo: 1 }, /typo/],
    [
      { realms: [], wireFormat: 'boxel', channel: 'x'.repeat(55) },
      /channel: with wireFormat 'boxel', probes and sync markers go on the control channel "x{55}__control" derived from it, which exceeds Postgres's 63-byte identifier limit: use a channel of at most 54 characters/,
    ],
    [
      { realms: [], wireFormat: 'boxel', computedChannel: 'module_cache_invalidated__control' },
      /channel: with wireFormat 'boxel', its control channel "module_cache_invalidated__control" must differ from computedChannel and ackChannel/,
    ],
    [
      { realms: [], wireFormat: 'boxel', consistency: 'strong', ackChannel: 'module_cache_invalidated__control' },
      /must differ from computedChannel and ackChannel/,
    ],
    [{ realms: [], consistency: 'strong', listener: false }, /consistency: 'strong' needs the listener/],
    [{ realms: [], consistency: 'strong', leaseMs: 1_000 }, /leaseMs: must exceed listener\.heartbeat\.intervalMs \+ timeoutMs/],
    [{ realms: [], consistency: 'eventually' }, /consistency/],
  ])('rejects %j naming the option', (options, message) => {
    expect(() => resolveModuleCacheOptions(options)).toThrow(ModuleCacheOptionsError);
    expect(() => resolveModuleCacheOptions(options)).toThrow(message);
  });

  it('accepts only plain lower-case identifiers as channel names (they are also quoted at LISTEN)', () => {
    for (const channel of ['Module_Cache', 'module-cache', '1channel', '', 'x'.repeat(64), 'a"; DROP TABLE t; --', 'ümlaut']) {
      expect(() => resolveModuleCacheOptions({ realms: ['https://a.test/r/'], source, channel })).toThrow(/channel: must match/);
      expect(() => resolveModuleCacheOptions({ realms: ['https://a.test/r/'], source, computedChannel: channel })).toThrow(
        /computedChannel: must match/,
      );
    }
    expect(() => resolveModuleCacheOptions({ realms: ['https://a.test/r/'], source, channel: 'x'.repeat(63) })).not.toThrow();
    expect(() => resolveModuleCacheOptions({ realms: ['https://a.test/r/'], source, computedChannel: 'module_cache_invalidated' })).toThrow(
      /computedChannel: must differ from channel/,
    );
  });

  it("derives the control channel of wireFormat 'seed' (a 54-character channel still fits), and allows strong mode with it", () => {
    const seed = resolveModuleCacheOptions({ source, wireFormat: 'seed', channel: 'x'.repeat(54) });
    expect(controlChannelFor(seed)).toBe(`${'x'.repeat(54)}__control`);
    expect(controlChannelFor(resolveModuleCacheOptions({ source, wireFormat: 'seed' }))).toBe('module_cache_invalidated__control');
    // In the package's own format nothing changes: probes and markers share the invalidation channel, of any valid length.
    const own = resolveModuleCacheOptions({ source, channel: 'x'.repeat(63) });
    expect(controlChannelFor(own)).toBe('x'.repeat(63));
    expect(() => resolveModuleCacheOptions({ source, wireFormat: 'seed', consistency: 'strong' })).not.toThrow();
  });

  it('rejects a non-object', () => {
    expect(() => resolveModuleCacheOptions(undefined)).toThrow(/expected an object/);
  });
});
