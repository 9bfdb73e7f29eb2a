import { Logger } from '@nestjs/common';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MODULE_CACHE_INVALIDATED_CHANNEL } from '../../src';
import { useCacheTestBed } from '../support/test-bed';
import { FakeSource } from '../support/fake-source';
import { Client, type Notification } from 'pg';
import { waitFor } from '../support/wait';

/** `wireFormat: 'seed'`, the former name of 'boxel': still works for one minor version, with one warning at startup. */
const REALM = 'https://example.test/alias/';
const bed = useCacheTestBed({ realms: [REALM], source: new FakeSource() });

afterEach(() => vi.restoreAllMocks());

describe("wireFormat: 'seed'", () => {
  it("warns once at startup and sends what 'boxel' sends", async () => {
    const warn = vi.spyOn(Logger.prototype, 'warn');
    const spy = new Client({ connectionString: bed.db.url });
    const heard: string[] = [];
    await spy.connect();
    spy.on('notification', (n: Notification) => heard.push(n.payload ?? ''));
    await spy.query(`LISTEN ${MODULE_CACHE_INVALIDATED_CHANNEL}`);
    try {
      const { lookup } = await bed.start({ wireFormat: 'seed' });
      const deprecations = warn.mock.calls.filter(([message]) => String(message).includes("'seed' is deprecated"));
      expect(deprecations).toHaveLength(1);
      expect(String(deprecations[0][0])).toContain("use 'boxel'");
      await lookup.clearRealm(REALM);
      await waitFor(() => heard.some((p) => p.includes('"realm"')), 10_000, 'the realm payload');
      expect(heard.filter((p) => p.includes('"realm"')).map((p) => JSON.parse(p) as unknown)).toEqual([{ k: 'realm', r: REALM }]);
    } finally {
      await spy.end();
    }
    warn.mockClear();
    await bed.start({ wireFormat: 'boxel' });
    expect(warn.mock.calls.filter(([message]) => String(message).includes('deprecated'))).toEqual([]);
  });
});
