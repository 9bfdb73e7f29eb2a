import { describe, expect, it } from 'vitest';
import type { DefinitionSourceContext, LoadedModule, ModuleCacheOptions } from '../../src';
import type { CacheApp } from '../support/app';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

/**
 * One computation per key, through retries (SPEC Lookup 5): a computation discarded by an
 * invalidation joins the key's newer flight instead of computing beside it. Gates make every
 * interleaving deterministic.
 */
const REALM = 'https://example.test/flights/';
const bed = useCacheTestBed({ realms: [REALM], listener: { applicationName: 'mc-one-flight' } });

/** Counts source calls in progress, and the most at once. */
class CountingSource extends FakeSource {
  active = 0;
  maxActive = 0;

  override async load(url: string, ctx: DefinitionSourceContext): Promise<LoadedModule | null> {
    this.maxActive = Math.max(this.maxActive, ++this.active);
    try {
      return await super.load(url, ctx);
    } finally {
      this.active--;
    }
  }
}

async function start(source: FakeSource, options: Partial<ModuleCacheOptions> = {}): Promise<CacheApp> {
  return bed.start({ source, ...options });
}

describe('a retry after a discard joins the newer flight of its key', () => {
  it('without claims (no dedicated connection): the source runs exactly 2 times', async () => {
    const url = `${REALM}alone.ts`;
    const source = new CountingSource().define(url);
    const { lookup } = await start(source, { listener: false });
    source.hold();
    const early = lookup.lookup(url);
    await waitFor(() => source.waiting === 1, 5000, 'the first computation');
    source.version = 2;
    await lookup.invalidate(url); // the first computation is doomed; later callers start a newer one
    const late = lookup.lookup(url);
    await waitFor(() => source.waiting === 2, 5000, 'the newer computation');
    source.release();
    const entries = await Promise.all([early, late]);
    process.stdout.write(`[flights] discard + newer flight, no claims: ${source.calls.length} source call(s)\n`);
    expect(entries.map((e) => e?.definitions)).toEqual([{ value: { version: 2, url } }, { value: { version: 2, url } }]);
    // The first, discarded, and the newer one, which the retry joined: no third.
    expect(source.callsFor(url)).toBe(2);
  });
});
