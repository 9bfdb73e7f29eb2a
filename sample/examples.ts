import type { ServiceConfig } from './service-config';

export interface Endpoint {
  route: string;
  what: string;
}

export const ENDPOINTS: Endpoint[] = [
  {
    route: 'GET /definitions?url=URL[&scope=S]',
    what: 'the whole cache entry of a module (computed on a miss); 404 when no such module. Header x-user: who asks (a private realm caches per user)',
  },
  { route: 'GET /definitions?url=URL&name=NAME[&scope=S]', what: 'one definition; 404 with the reason when it is missing or failed' },
  {
    route: 'POST /invalidate {"url": URL} or {"urls": [URL, …]}',
    what: 'invalidates modules and their consumers in every worker (a list in one transaction); returns the URLs',
  },
  { route: 'POST /realms/clear {"realm": REALM}', what: 'clears one realm in every worker' },
  { route: 'POST /clear', what: 'clears everything in every worker' },
  {
    route: 'POST /prewarm {"realm": REALM[, "modules": [URL, …]]}',
    what: "computes and stores a realm's modules (all, or the ones listed) ahead of their first lookup; returns a summary",
  },
  { route: 'GET /health', what: 'the invalidation listener: connected, LISTENing, self-probe passed' },
  { route: 'GET /metrics', what: 'Prometheus metrics' },
  { route: 'GET /events', what: 'server-sent events: hits, misses, computations, invalidations (also remote ones)' },
  { route: 'GET /REALM/FILE', what: "a realm folder's files (REALMS_DIR/REALM/FILE), so module URLs resolve" },
];

/**
 * Copy-paste commands, for the primary's banner and `GET /`, over the sample realms: `realm` (public)
 * and `private-notes` (private: a `.private` file, so one cache entry per x-user). Keep in step with
 * docs/sample-service.md.
 */
export function exampleCommands({ port, realmsURL }: Pick<ServiceConfig, 'port' | 'realmsURL'>): string[] {
  const base = `http://localhost:${port}`;
  const realm = new URL('realm/', realmsURL).href;
  const notes = new URL('private-notes/', realmsURL).href;
  return [
    `curl '${base}/definitions?url=${realm}pet-owner.ts'`,
    `curl '${base}/definitions?url=${realm}pet-owner.ts&name=PetOwner'`,
    `curl '${base}/definitions?url=${realm}pet-card.gts'`,
    `curl '${base}/definitions?url=${realm}uses-broken.ts'`,
    `curl -H 'x-user: alice' '${base}/definitions?url=${notes}notebook.gts'`,
    `curl ${base}${new URL(realm).pathname}pet-card.gts`,
    `curl -X POST ${base}/invalidate -H 'content-type: application/json' -d '{"url":"${realm}person.ts"}'`,
    `curl -X POST ${base}/prewarm -H 'content-type: application/json' -d '{"realm":"${realm}"}'`,
    `curl ${base}/health`,
    `curl ${base}/metrics`,
    `curl -N ${base}/events`,
  ];
}
