import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { DefinitionSourceTimeoutError } from '../../src';
import { callSource } from '../../src/computation/source-step';

describe('callSource', () => {
  it('leaves no listener on the long-lived shutdown signal, whatever the outcome', async () => {
    const shutdown = new AbortController();
    const context = { realmURL: 'https://a.test/r/', scope: 'public', timeoutMs: 50, shutdown: shutdown.signal };
    for (let i = 0; i < 100; i++) {
      await callSource({ load: async () => ({ definitions: {}, deps: [] }) }, 'https://a.test/r/x.ts', context);
      await callSource({ load: async () => null }, 'https://a.test/r/x.ts', context);
      await callSource({ load: async () => Promise.reject(new Error('boom')) }, 'https://a.test/r/x.ts', context).catch(() => undefined);
    }
    await expect(callSource({ load: () => new Promise(() => {}) }, 'https://a.test/r/x.ts', context)).rejects.toBeInstanceOf(
      DefinitionSourceTimeoutError,
    );
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0);
  });

  it('aborts the source signal on shutdown', async () => {
    const shutdown = new AbortController();
    let seen: AbortSignal | undefined;
    const pending = callSource(
      {
        load: (_url, ctx) => {
          seen = ctx.signal;
          return new Promise(() => {});
        },
      },
      'https://a.test/r/x.ts',
      { realmURL: 'https://a.test/r/', scope: 'public', timeoutMs: 60_000, shutdown: shutdown.signal },
    );
    await Promise.resolve();
    shutdown.abort();
    await expect(pending).rejects.toThrow(/shutting down/);
    expect(seen?.aborted).toBe(true);
  });

  it('refuses a result whose deps are not all strings (unresolvable strings, such as bare packages, are left out later)', async () => {
    const context = { realmURL: 'https://a.test/r/', scope: 'public', timeoutMs: 1_000, shutdown: new AbortController().signal };
    const load = async () => ({ definitions: {}, deps: ['./b.ts', 42] as unknown as string[] });
    await expect(callSource({ load }, 'https://a.test/r/x.ts', context)).rejects.toThrow(/deps must be an array of strings.*42/);
  });
});
