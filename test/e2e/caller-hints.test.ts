import { describe, expect, it } from 'vitest';
import { DEFAULT_PRIORITY, InvalidLookupOptionsError, type DefinitionSourceContext } from '../../src';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';
import { waitFor } from '../support/wait';

const REALM = 'https://example.test/realm/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });
const url = (n: string) => `${REALM}${n}.ts`;

/** A FakeSource that keeps the context of every call. */
function recordingSource(): { source: FakeSource; contexts: Map<string, DefinitionSourceContext> } {
  const source = new FakeSource();
  const contexts = new Map<string, DefinitionSourceContext>();
  const original = source.load.bind(source);
  source.load = (u, ctx) => {
    contexts.set(u, ctx);
    return original(u, ctx);
  };
  return { source, contexts };
}

describe('caller hints reach the source', () => {
  it('priority and user are in the load() context; a lookup that names neither gets the default priority and no user', async () => {
    const { source, contexts } = recordingSource();
    source.define(url('a')).define(url('b'));
    const { lookup } = await bed.start({ source });
    await lookup.lookup(url('a'), { priority: 7, user: 'alice' });
    expect(contexts.get(url('a'))).toMatchObject({ realmURL: REALM, scope: 'public', priority: 7, user: 'alice' });
    await lookup.lookup(url('b'));
    expect(contexts.get(url('b'))!.priority).toBe(DEFAULT_PRIORITY);
    expect(DEFAULT_PRIORITY).toBe(5);
    expect('user' in contexts.get(url('b'))!).toBe(false);
  });

  it('a bad priority is refused with E_INVALID_LOOKUP_OPTIONS, before any work and even for an entry in memory', async () => {
    const source = new FakeSource().define(url('a')).define(url('fresh'));
    const { lookup } = await bed.start({ source });
    await lookup.lookup(url('a'));
    for (const priority of [-1, 11, 2.5, Number.NaN, '7', null]) {
      for (const target of [url('a'), url('fresh')]) {
        const error = await lookup.lookup(target, { priority: priority as number }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidLookupOptionsError);
        expect((error as InvalidLookupOptionsError).code).toBe('E_INVALID_LOOKUP_OPTIONS');
        expect((error as Error).message).toMatch(/priority must be an integer from 0 to 10/);
      }
    }
    await expect(lookup.lookupMany([url('a')], { priority: 12 })).rejects.toBeInstanceOf(InvalidLookupOptionsError);
    expect(source.callsFor(url('fresh'))).toBe(0);
    // The bounds themselves are fine.
    await lookup.lookup(url('fresh'), { priority: 0 });
    await lookup.lookup(url('a'), { priority: 10 });
  });

  it('callers sharing one computation raise it to the highest priority among them, told through onPriorityChange', async () => {
    const { source, contexts } = recordingSource();
    source.define(url('shared'));
    const { lookup } = await bed.start({ source });
    source.hold();
    const first = lookup.lookup(url('shared'), { priority: 2, user: 'bob' });
    await waitFor(() => source.waiting === 1, 10_000, 'the source to be called');
    const ctx = contexts.get(url('shared'))!;
    expect(ctx.priority).toBe(2);
    const heard: number[] = [];
    ctx.onPriorityChange!((p) => heard.push(p));
    const joiners = [
      lookup.lookup(url('shared'), { priority: 8, user: 'carol' }),
      lookup.lookup(url('shared'), { priority: 3 }),
      lookup.lookup(url('shared'), { priority: 9 }),
      lookup.lookup(url('shared')),
    ];
    expect(heard).toEqual([8, 9]);
    expect(ctx.priority).toBe(9);
    // The user is the one of the caller that started the computation.
    expect(ctx.user).toBe('bob');
    source.release();
    const entries = await Promise.all([first, ...joiners]);
    expect(new Set(entries).size).toBe(1);
    expect(source.callsFor(url('shared'))).toBe(1);
  });

  it('listeners a source registered are dropped when its call ends', async () => {
    const { source, contexts } = recordingSource();
    source.define(url('done'));
    const { lookup } = await bed.start({ source, memory: false });
    source.hold();
    const first = lookup.lookup(url('done'), { priority: 1 });
    await waitFor(() => source.waiting === 1, 10_000, 'the source to be called');
    const heard: number[] = [];
    contexts.get(url('done'))!.onPriorityChange!((p) => heard.push(p));
    source.release();
    await first;
    // A later lookup is served from the table: no computation to raise, and the old listener hears nothing.
    await lookup.lookup(url('done'), { priority: 10 });
    expect(heard).toEqual([]);
  });

  it("a dependency computed for its consumer ('compute') runs at the consumer's priority, for its user", async () => {
    const { source, contexts } = recordingSource();
    source.define(url('consumer'), ['./dep'], { error: { message: 'consumer is broken' } });
    source.define(url('dep'));
    const { lookup } = await bed.start({ source, dependencyErrors: 'compute' });
    await lookup.lookup(url('consumer'), { priority: 9, user: 'dana' });
    expect(contexts.get(url('dep'))).toMatchObject({ priority: 9, user: 'dana' });
  });
});
