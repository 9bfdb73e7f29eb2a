import { describe, expect, it } from 'vitest';
import {
  LOWEST_PRIORITY,
  NoModuleListingError,
  type DefinitionSource,
  type DefinitionSourceContext,
  type LoadedModule,
  type ModuleCacheEvent,
  type PrewarmSummary,
} from '../../src';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

const REALM = 'https://example.test/realm/';
const NESTED = 'https://example.test/realm/nested/';
const OTHER = 'https://example.test/other/';
const bed = useCacheTestBed({ realms: [REALM, NESTED, OTHER], listener: false });
const url = (n: string) => `${REALM}${n}.ts`;

type Progress = Extract<ModuleCacheEvent, { type: 'prewarm-progress' }>;

async function rows(): Promise<Array<{ url: string; error: boolean }>> {
  return bed.db.query<{ url: string; error: boolean }>(`SELECT url, error IS NOT NULL AS error FROM module_cache_entries ORDER BY url`);
}

/** Each call waits for its own release; counts how many calls are in the source at once. */
class GatedSource implements DefinitionSource {
  inside = 0;
  maxInside = 0;
  readonly calls: string[] = [];
  readonly priorities: number[] = [];
  private readonly waiting: Array<() => void> = [];

  get held(): number {
    return this.waiting.length;
  }

  releaseOne(): void {
    this.waiting.shift()?.();
  }

  async load(moduleURL: string, ctx: DefinitionSourceContext): Promise<LoadedModule | null> {
    this.calls.push(moduleURL);
    this.priorities.push(ctx.priority!);
    this.inside++;
    this.maxInside = Math.max(this.maxInside, this.inside);
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.inside--;
    return { definitions: { url: moduleURL }, deps: [] };
  }
}

describe('prewarm', () => {
  it('computes and persists the realm own modules, skips the others, reports errors without storing them', async () => {
    const source = new FakeSource()
      .define(url('a'))
      .define(url('b'), [`${OTHER}dep.ts`, './a'])
      .define(url('broken'), [], { error: { message: 'broken on purpose' } })
      .define(`${OTHER}dep.ts`)
      .define(`${NESTED}inner.ts`);
    const seen: DefinitionSourceContext[] = [];
    const load = source.load.bind(source);
    source.load = (u, ctx) => (seen.push(ctx), load(u, ctx));
    const { lookup } = await bed.start({ source });
    const events: ModuleCacheEvent[] = [];
    lookup.events$.subscribe((e) => events.push(e));

    const summary = await lookup.prewarm(REALM, [
      url('a'),
      url('b'),
      `${url('b')}?v=2`,
      url('broken'),
      url('missing'),
      `${OTHER}dep.ts`,
      `${NESTED}inner.ts`,
    ]);
    expect(summary).toEqual({
      realmURL: REALM,
      requested: 6,
      warmed: 2,
      alreadyCached: 0,
      notFound: 1,
      errors: [{ url: url('broken'), message: 'broken on purpose' }],
      skipped: 2,
      durationMs: expect.any(Number),
    });
    // Only the realm's own modules were computed: not the cross-realm dependency, nor the nested realm's module.
    expect(source.callsFor(`${OTHER}dep.ts`)).toBe(0);
    expect(source.callsFor(`${NESTED}inner.ts`)).toBe(0);
    expect(new Set(seen.map((c) => c.priority))).toEqual(new Set([LOWEST_PRIORITY]));
    expect(await rows()).toEqual([
      { url: url('a'), error: false },
      { url: url('b'), error: false },
    ]);

    const progress = events.filter((e): e is Progress => e.type === 'prewarm-progress');
    expect(progress.map((e) => e.completed)).toEqual([1, 2, 3, 4]);
    expect(new Set(progress.map((e) => e.total))).toEqual(new Set([4]));
    expect(progress.find((e) => e.url === url('broken'))).toMatchObject({ outcome: 'error', error: 'broken on purpose' });
    expect(progress.find((e) => e.url === url('missing'))).toMatchObject({ outcome: 'not-found' });
    const finished = events.filter((e) => e.type === 'prewarm-finished');
    expect(finished).toEqual([{ type: 'prewarm-finished', ...summary }]);

    // The error entry was kept neither in the table nor in memory: a lookup computes it (and stores it).
    expect(await lookup.lookupCached(url('broken'))).toBeUndefined();
    const calls = source.callsFor(url('broken'));
    expect((await lookup.lookup(url('broken')))?.error?.message).toBe('broken on purpose');
    expect(source.callsFor(url('broken'))).toBe(calls + 1);
    expect(await rows()).toContainEqual({ url: url('broken'), error: true });

    // Again: what is stored counts as cached (not computed); a cached error is reported as one.
    const again = await lookup.prewarm(REALM, [url('a'), url('b'), url('broken')]);
    expect(again).toMatchObject({ warmed: 0, alreadyCached: 2, errors: [{ url: url('broken'), message: 'broken on purpose' }] });
    expect(source.callsFor(url('a'))).toBe(1);
  });

  it('at most prewarm.concurrency modules are in the source at once', async () => {
    const source = new GatedSource();
    const { lookup } = await bed.start({ source, prewarm: { concurrency: 3 } });
    const modules = Array.from({ length: 10 }, (_, i) => url(`c${i}`));
    const running = lookup.prewarm(REALM, modules);
    for (let remaining = modules.length; remaining > 0; remaining--) {
      await waitFor(() => source.held === Math.min(3, remaining), 10_000, `${Math.min(3, remaining)} calls in the source`);
      source.releaseOne();
    }
    const summary = await running;
    expect(summary.warmed).toBe(10);
    expect(source.calls).toHaveLength(10);
    expect(source.maxInside).toBe(3);
    expect(new Set(source.priorities)).toEqual(new Set([LOWEST_PRIORITY]));
  });

  it("yields to a lookup that joins its computation: the priority rises, and that lookup's error entry is stored", async () => {
    const source = new FakeSource().define(url('slow'), [], { error: { message: 'slow and broken' } });
    let ctx: DefinitionSourceContext | undefined;
    const load = source.load.bind(source);
    source.load = (u, c) => ((ctx = c), load(u, c));
    const { lookup } = await bed.start({ source });
    source.hold();
    const prewarming = lookup.prewarm(REALM, [url('slow')]);
    await waitFor(() => source.waiting === 1, 10_000, 'the prewarm to call the source');
    const raised: number[] = [];
    ctx!.onPriorityChange!((p) => raised.push(p));
    const looking = lookup.lookup(url('slow'), { priority: 6 });
    expect(raised).toEqual([6]);
    source.release();
    const [summary, entry] = await Promise.all([prewarming, looking]);
    expect(summary.errors).toEqual([{ url: url('slow'), message: 'slow and broken' }]);
    expect(entry?.error?.message).toBe('slow and broken');
    expect(source.callsFor(url('slow'))).toBe(1);
    expect(await rows()).toEqual([{ url: url('slow'), error: true }]);
  });

  it("without a list, warms what the source's listModules lists; without listModules, a coded error", async () => {
    const listed: Array<{ realm: string; signal: boolean }> = [];
    const source = Object.assign(new FakeSource().define(url('l1')).define(url('l2')), {
      listModules: async (realmURL: string, context: { realmURL: string; signal: AbortSignal }) => {
        listed.push({ realm: realmURL, signal: context.signal instanceof AbortSignal });
        return [url('l1'), url('l2'), `${OTHER}elsewhere.ts`];
      },
    });
    const { lookup } = await bed.start({ source });
    const summary = await lookup.prewarm('HTTPS://Example.test/realm/');
    expect(summary).toMatchObject({ realmURL: REALM, requested: 3, warmed: 2, skipped: 1 });
    expect(listed).toEqual([{ realm: REALM, signal: true }]);

    const { lookup: plain } = await bed.start({ source: new FakeSource() });
    const error = await plain.prewarm(REALM).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoModuleListingError);
    expect((error as NoModuleListingError).code).toBe('E_NO_MODULE_LISTING');
    // A list works without listModules; bad input is refused before any work.
    await expect(plain.prewarm('not a realm', [])).rejects.toMatchObject({ code: 'E_INVALID_REALM_URL' });
    await expect(plain.prewarm(REALM, 'x' as unknown as string[])).rejects.toMatchObject({ code: 'E_INVALID_MODULE_URL' });
    await expect(plain.prewarm(REALM, ['not a url'])).rejects.toMatchObject({ code: 'E_INVALID_MODULE_URL' });
  });

  it('warms a realm this process has not registered, and a source that throws is reported for its module only', async () => {
    const source = new FakeSource().define(url('fine')).set(url('throws'), () => {
      throw new Error('source exploded');
    });
    const { lookup } = await bed.start({ source, realms: [] });
    const summary: PrewarmSummary = await lookup.prewarm(REALM, [url('fine'), url('throws')]);
    expect(summary.warmed).toBe(1);
    expect(summary.errors).toEqual([{ url: url('throws'), message: expect.stringContaining('source exploded') }]);
    expect(await rows()).toEqual([{ url: url('fine'), error: false }]);
  });
});
