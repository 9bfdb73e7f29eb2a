import { describe, expect, it } from 'vitest';
import { type ModuleError } from '../../src';
import { FakeSource } from '../support/fake-source';
import { useCacheTestBed } from '../support/test-bed';

/** The source's error documents and diagnostics, kept whole in entries and rows, and clamped to maxErrorBytes. */
const REALM = 'https://example.test/errors/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });
const url = (n: string) => `${REALM}${n}.ts`;

describe('whole error documents and diagnostics', () => {
  it('keeps every field of the source’s error document, and its diagnostics beside the cache’s timings', async () => {
    const error = { message: 'boom', status: 500, id: `${REALM}doc.ts`, stack: 'Error: boom\n    at x', deps: ['./a.ts'], meta: { n: 1 } };
    const source = new FakeSource().set(url('doc'), { definitions: { a: 1 }, deps: [], error, diagnostics: { renderMs: 12, log: ['x'] } });
    const { lookup } = await bed.start({ source });
    const entry = await lookup.lookup(url('doc'));
    expect(entry?.error).toEqual(error);
    expect(entry?.diagnostics).toMatchObject({ attempt: 1, requested: url('doc'), source: { renderMs: 12, log: ['x'] } });
    const [row] = await bed.db.query<{ error: ModuleError; diagnostics: Record<string, unknown> }>(
      `SELECT error, diagnostics FROM module_cache_entries WHERE url = $1`,
      [url('doc')],
    );
    expect(row.error).toEqual(error);
    expect(row.diagnostics).toMatchObject({ computeMs: expect.any(Number), source: { renderMs: 12, log: ['x'] } });
  });

  it('an error document of 1 MB is stored clamped to maxErrorBytes, with a visible marker', async () => {
    const huge = {
      message: 'big',
      stack: 'x'.repeat(1_000_000),
      additionalErrors: Array.from({ length: 200 }, (_, i) => ({ message: `dependency ${i} broke`, stack: 'y'.repeat(5_000) })),
    };
    const source = new FakeSource().set(url('huge'), { definitions: {}, deps: [], error: huge });
    const { lookup } = await bed.start({ source });
    const entry = await lookup.lookup(url('huge'));
    const [{ bytes }] = await bed.db.query<{ bytes: number }>(
      `SELECT octet_length(error::text) AS bytes FROM module_cache_entries WHERE url = $1`,
      [url('huge')],
    );
    expect(Buffer.byteLength(JSON.stringify(entry?.error))).toBeLessThanOrEqual(64 * 1024);
    expect(bytes).toBeLessThanOrEqual(64 * 1024 + 2048); // jsonb's text adds spaces
    expect(entry?.error).toMatchObject({ message: 'big', truncated: true });
    expect(String(entry?.error?.stack)).toMatch(/…\[truncated\]$/);
    expect(entry?.error?.additionalErrors?.at(-1)?.message).toMatch(/more errors left out …\[truncated\]$/);
  });
});
