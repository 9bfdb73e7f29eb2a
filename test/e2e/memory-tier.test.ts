import { describe, expect, it } from 'vitest';
import { ofType, record } from '../support/events';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';

/** The in-process memory tier in front of the table: turned off, and filled by lookups. */
const REALM = 'https://example.test/opts/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });

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
