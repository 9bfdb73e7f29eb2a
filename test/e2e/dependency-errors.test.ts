import { describe, expect, it } from 'vitest';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';

/**
 * Dependency errors as the reference attaches them (dependencyErrors: 'cached', the default): a
 * module whose own computation errored gets the errors its dependencies' cached entries hold.
 */
const REALM = 'https://example.test/deps/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });
const url = (n: string) => `${REALM}${n}.ts`;

describe('the reference’s dependency errors (cached entries only), by default', () => {
  it('a cold lookup of a module with 50 in-realm imports calls the source once; with compute, 51 times', async () => {
    const imports = Array.from({ length: 50 }, (_, i) => `./dep${i}.ts`);
    const counts: Record<string, number> = {};
    for (const mode of ['cached', 'compute'] as const) {
      const source = new FakeSource().define(url('wide'), imports);
      imports.forEach((_, i) => source.define(url(`dep${i}`)));
      const { lookup } = await bed.start({ source, dependencyErrors: mode });
      await lookup.lookup(url('wide'));
      counts[mode] = source.calls.length;
      await bed.db.query('DELETE FROM module_cache_entries');
    }
    process.stdout.write(
      `[deps] cold lookup of a module with 50 in-realm imports: ${counts.cached} source call(s) with 'cached', ${counts.compute} with 'compute'\n`,
    );
    expect(counts).toEqual({ cached: 1, compute: 51 });
  });

  it('a module whose own computation errored gets its dependencies’ cached errors: transitively through errored ones, de-duplicated, .json skipped; a fine module gets none', async () => {
    const source = new FakeSource()
      .set(url('top'), { definitions: {}, deps: ['./mid.ts', './data.json', './fine.ts'], error: { message: 'top broke', status: 500 } })
      .set(url('mid'), { definitions: {}, deps: ['./leaf.ts'], error: { message: 'mid broke', status: 500, id: 'mid' } })
      .set(url('leaf'), { definitions: {}, deps: [], error: { message: 'leaf broke', status: 422 } })
      .set(`${REALM}data.json`, { definitions: {}, deps: [], error: { message: 'json is never consulted' } })
      .define(url('fine'), ['./leaf.ts'])
      .define(url('uses'), ['./leaf.ts']);
    const { lookup } = await bed.start({ source });
    for (const n of ['leaf', 'mid', 'fine']) await lookup.lookup(url(n));
    await lookup.lookup(`${REALM}data.json`);
    const top = await lookup.lookup(url('top'));
    expect(top?.error).toEqual({
      message: 'top broke',
      status: 500,
      additionalErrors: [
        { message: 'mid broke', status: 500, id: 'mid', additionalErrors: [{ message: 'leaf broke', status: 422 }] },
        { message: 'leaf broke', status: 422 },
      ],
    });
    // Its own computation is fine: nothing attached (the reference's semantics), and nothing computed for it.
    expect((await lookup.lookup(url('uses')))?.error).toBeUndefined();
    expect(source.callsFor(url('leaf'))).toBe(1);
  });
});
