import { describe, expect, it } from 'vitest';
import { type ModuleCacheEntry } from '../../src';
import { ofType, record } from '../support/events';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';

/** The in-process memory tier in front of the table: turned off, and filled by lookups. */
const REALM = 'https://example.test/opts/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });
const url = (n: string) => `${REALM}${n}.ts`;

describe('memory: false', () => {
  it('serves every lookup after the first from the table, none from memory', async () => {
    const source = new FakeSource().define(`${REALM}no-memory.ts`);
    const { lookup } = await bed.start({ source, memory: false });
    const events = record(lookup);
    for (let i = 0; i < 5; i++) expect((await lookup.lookup(`${REALM}no-memory.ts`))?.url).toBe(`${REALM}no-memory.ts`);
    expect(await lookup.lookupCached(`${REALM}no-memory.ts`)).toBeDefined();
    const stats = lookup.stats();
    expect(stats.computes).toBe(1);
    expect(stats.hits).toEqual({ memory: 0, table: 5 });
    expect(stats.memoryEntries).toBe(0);
    expect(ofType(events, 'hit').map((e) => e.tier)).toEqual(['table', 'table', 'table', 'table', 'table']);
  });
});

describe('lookupMany', () => {
  it('lookupMany fills the memory tier', async () => {
    const source = new FakeSource().define(url('m1')).define(url('m2'));
    const first = await bed.start({ source });
    await first.lookup.lookup(url('m1'));
    await first.lookup.lookup(url('m2'));
    const second = await bed.start({ source });
    const entries = await second.lookup.lookupMany([url('m1'), url('m2'), url('none')]);
    expect([...entries.values()].map((e: ModuleCacheEntry | undefined) => e?.url)).toEqual([url('m1'), url('m2'), undefined]);
    expect(second.lookup.stats()).toMatchObject({ hits: { memory: 0, table: 2 }, memoryEntries: 2 });
    await second.lookup.lookupMany([url('m1'), url('m2')]);
    expect(second.lookup.stats().hits).toEqual({ memory: 2, table: 2 });
  });
});
