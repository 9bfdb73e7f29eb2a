/**
 * Invalidating 1,000 URLs (a hub module and its 999 consumers): how many NOTIFY payloads our
 * invalidate() sends (byte-budget packing by encodeInvalidations) and the time until a
 * listener has received every URL, against 1,000 separate NOTIFYs (one per URL, in the same
 * wire format) received by the same listener.
 */
import { encodeInvalidations, MODULE_CACHE_INVALIDATED_CHANNEL, parseInvalidation } from '../src';
import { createCacheApp } from '../test/support/app';
import { FakeSource } from '../test/support/fake-source';
import { benchClient, benchDatabase, goal, median, ms, onCleanup, progress, REALM, runBench, times, type BenchDatabase } from './support';

const URLS = 1_000;
const REPS = 5;
const names = Array.from({ length: URLS }, (_, i) => (i === 0 ? 'hub' : `components/widget-${i}`));
const urlOf = (name: string) => `${REALM}${name}.gts`;

async function seedStar(db: BenchDatabase): Promise<void> {
  await db.query(
    `INSERT INTO module_cache_entries (url, scope, alias, realm, definitions, deps)
     SELECT $1 || n || '.gts', 'public', $1 || n, $1, '{}'::jsonb, '{}' FROM unnest($2::text[]) n`,
    [REALM, names],
  );
  await db.query(
    `INSERT INTO module_cache_edges (consumer_alias_hash, dep_alias_hash)
     SELECT md5($1 || c)::uuid, md5($1 || 'hub')::uuid FROM unnest($2::text[]) c ON CONFLICT DO NOTHING`,
    [REALM, names.slice(1)],
  );
}

runBench('batch-notify', async () => {
  const db = await benchDatabase();
  const app = await createCacheApp(db.url, { realms: [REALM], source: new FakeSource(), listener: false });
  onCleanup('the Nest app', () => app.close());
  const listener = await benchClient(db.url, 'module-cache-bench-listener');
  const notifier = await benchClient(db.url, 'module-cache-bench-notifier');
  await listener.query(`LISTEN ${MODULE_CACHE_INVALIDATED_CHANNEL}`);

  // Resolves when every expected URL has arrived; counts the payloads it took.
  let expecting: { missing: Set<string>; payloads: number; done: (at: number) => void } | undefined;
  listener.on('notification', ({ payload = '' }) => {
    const at = performance.now();
    const parsed = parseInvalidation(payload);
    if (!expecting || !parsed.ok || parsed.message.kind !== 'module') return;
    expecting.payloads++;
    for (const url of parsed.message.urls) expecting.missing.delete(url);
    if (expecting.missing.size === 0) expecting.done(at);
  });
  const receiveAll = () => {
    let done!: (at: number) => void;
    const arrived = new Promise<number>((resolve) => (done = resolve));
    expecting = { missing: new Set(names.map(urlOf)), payloads: 0, done };
    return { arrived, state: expecting };
  };

  const ours: number[] = [];
  const naive: number[] = [];
  let sent = 0;
  let received = 0;
  let listBytes = 0;
  for (let rep = 1; rep <= REPS; rep++) {
    progress(`rep ${rep}/${REPS}: invalidate(hub) with ${URLS - 1} consumers, then ${URLS} separate NOTIFYs`);
    await seedStar(db);
    const before = app.lookup.stats().notifications.sent;
    let wait = receiveAll();
    let t = performance.now();
    const urls = await app.lookup.invalidate(urlOf('hub'));
    ours.push((await wait.arrived) - t);
    sent = app.lookup.stats().notifications.sent - before;
    received = wait.state.payloads;
    if (urls.length < URLS) throw new Error(`only ${urls.length} URLs invalidated`);
    listBytes = Buffer.byteLength(JSON.stringify(urls), 'utf8');

    const origin = 'bench-naive';
    const payloads = names.map((n) => encodeInvalidations({ kind: 'module', realm: REALM, urls: [urlOf(n)] }, { origin })[0]);
    wait = receiveAll();
    t = performance.now();
    for (const payload of payloads) await notifier.query('SELECT pg_notify($1, $2)', [MODULE_CACHE_INVALIDATED_CHANNEL, payload]);
    naive.push((await wait.arrived) - t);
  }
  const [o, n] = [median(ours), median(naive)];
  const rows = [
    {
      measure: `NOTIFY payloads for ${URLS.toLocaleString('en')} invalidated URLs`,
      ours: `${sent}`,
      baseline: `${URLS}`,
      ratio: `${times(URLS / sent)} fewer`,
      goal: goal(
        `≤ ceil(${listBytes.toLocaleString('en')} B / 7000) = ${Math.ceil(listBytes / 7000)}`,
        sent <= Math.ceil(listBytes / 7000),
      ),
    },
    {
      measure: `${URLS.toLocaleString('en')}-URL invalidation: call → listener has every URL`,
      ours: ms(o),
      baseline: ms(n),
      ratio: `${times(n / o)} faster`,
      goal: '—',
    },
  ];
  return {
    rows,
    notes: [
      `median of ${REPS} reps; the listener received ${received} payloads from ours (all parsed); the baseline sends one autocommit pg_notify per URL on one connection, each awaited`,
      `bytes = the JSON list of the URLs ours invalidated (${listBytes} B); the payloads add their envelope (kind, realm, origin)`,
      'ours includes the fan-out, fence log and delete of the 1,000 rows in the same transaction (the baseline deletes nothing)',
    ],
  };
});
