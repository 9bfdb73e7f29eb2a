/** The realms and the scopeFor of test/processes/scoped-worker.ts, shared with the test that drives it. */
export const PUBLIC_REALM = 'https://example.test/open/';
export const PRIVATE_REALM = 'https://example.test/private/';
export const scopeFor = (realm: string, user: string | undefined): string =>
  realm === PUBLIC_REALM ? 'public' : user ? `user:${user}` : 'anonymous';
