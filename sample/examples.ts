import type { ServiceConfig } from './service-config';

export interface Endpoint {
  route: string;
  what: string;
}

export const ENDPOINTS: Endpoint[] = [
  { route: 'GET /definitions?url=URL[&scope=S]', what: 'the whole cache entry of a module (computed on a miss); 404 when no such module' },
  { route: 'GET /definitions?url=URL&name=NAME[&scope=S]', what: 'one definition; 404 with the reason when it is missing or failed' },
  { route: 'POST /invalidate {"url": URL}', what: 'invalidates a module and its consumers in every worker; returns the URLs' },
  { route: 'POST /realms/clear {"realm": REALM}', what: 'clears one realm in every worker' },
  { route: 'POST /clear', what: 'clears everything in every worker' },
  { route: 'GET /health', what: 'the invalidation listener: connected, LISTENing, self-probe passed' },
  { route: 'GET /metrics', what: 'Prometheus metrics' },
  { route: 'GET /events', what: 'server-sent events: hits, misses, computations, invalidations (also remote ones)' },
  { route: `GET /realm/FILE`, what: 'the realm folder itself, so module URLs resolve' },
];

/** Copy-paste commands, for the primary's banner and `GET /`. */
export function exampleCommands({ port, realmURL }: Pick<ServiceConfig, 'port' | 'realmURL'>): string[] {
  const base = `http://localhost:${port}`;
  const module = new URL('pet-owner.ts', realmURL).href;
  const leaf = new URL('person.ts', realmURL).href;
  return [
    `curl '${base}/definitions?url=${module}'`,
    `curl '${base}/definitions?url=${module}&name=PetOwner'`,
    `curl '${base}/definitions?url=${new URL('uses-broken.ts', realmURL).href}'`,
    `curl -X POST ${base}/invalidate -H 'content-type: application/json' -d '{"url":"${leaf}"}'`,
    `curl ${base}/health`,
    `curl ${base}/metrics`,
    `curl -N ${base}/events`,
  ];
}
