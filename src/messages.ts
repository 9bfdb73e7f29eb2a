/**
 * Every message the library's errors carry, in one place, so their wording stays consistent
 * and can be reviewed at a glance. Log lines say what happened in their own words at the call site.
 */
const quote = (value: string, max = 200): string => JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);

export const messages = {
  // URLs, realms, scopes
  moduleURLNotString: (what: string) => `module URL must be a non-empty string, got ${what}`,
  moduleURLsNotArray: (what: string, method = 'lookupMany') => `${method}: must be an array of module URLs, got ${what}`,
  moduleURLTooLong: (length: number, limit: number) => `module URL is ${length} characters long; the limit is ${limit}`,
  badModuleURLText: (problem: string, input: string) => `module URL ${problem}: ${quote(input)}`,
  notAbsoluteURL: (input: string) => `not an absolute URL: ${quote(input)}`,
  notHttpURL: (protocol: string, input: string) => `module URL must be http(s), got ${protocol} in ${quote(input)}`,
  badRealmURL: (input: unknown) =>
    `realm URL must be an absolute http(s) URL ending with "/" and without query or hash, got ${typeof input === 'string' ? quote(input) : typeof input}`,
  unknownRealm: (url: string, registered: readonly string[]) =>
    `${url} is not inside any registered realm (${registered.length ? registered.join(', ') : 'none registered'})`,
  outsideRealm: (url: string, realm: string) => `${url} is not inside the realm ${realm} it was looked up in (options.realmURL)`,
  badScope: (why: string) => `scope ${why}`,
  noModuleListing: (realm: string) =>
    `prewarm(${realm}): no module URLs were given, and the definition source has no listModules(realmURL) to list them`,
  badModuleListing: (realm: string, why: string) => `definition source's listModules(${realm}) ${why}`,
  prewarmURLsNotArray: (what: string) => `prewarm: moduleURLs must be an array of module URLs, got ${what}`,
  badPriority: (got: unknown, min: number, max: number) =>
    `lookup option priority must be an integer from ${min} to ${max}, got ${typeof got === 'number' ? String(got) : typeof got}`,

  // definitions
  definitionNotFound: (moduleURL: string, name: string, reason: string) => `definition "${name}" of ${moduleURL}: ${reason}`,
  moduleNotFound: (moduleURL: string) => `no module at ${moduleURL} (nor at any of its extension candidates)`,

  // the source
  sourceTimeout: (url: string, ms: number) => `definition source did not answer for ${url} within ${ms} ms`,
  sourceFailed: (url: string, why: string) => `definition source failed for ${url}: ${why}`,
  sourceInvalidResult: (url: string, why: string) => `definition source returned an invalid result for ${url}: ${why}`,
  shuttingDown: (what: string) => `shutting down: gave up on ${what}`,

  // the wire (encoding a payload with inputs the parser would reject is a caller bug)
  wireBoxelUnsigned: () => "the 'boxel' format carries no signature",
  wireBadOrigin: (max: number) => `invalidation origin must be 1-${max} characters without control characters`,
  wireBadMaxBytes: (limit: number, got: number) => `maxBytes must be an integer of at most ${limit}, got ${got}`,
  wireBudgetTooSmall: (maxBytes: number) => `maxBytes ${maxBytes} cannot hold even a global invalidation message`,
  wireBadRealm: (realm: string) => `invalidation realm must be an absolute http(s) URL ending with "/": ${realm}`,
  wireBadModuleURL: (url: string) => `invalidation URL must be an absolute http(s) URL: ${url}`,

  // deadlines, the dedicated connection, the cluster relay
  deadline: (what: string, ms: number) => `${what}: no answer within ${ms} ms`,
  leaseRenewalFailed: (why: string) => `could not renew the lease: ${why}`,
  relayOptions: (problems: string[]) => `ModuleCacheClusterRelay: ${problems.join('; ')}`,
  relayNotPrimary: () => 'ModuleCacheClusterRelay runs in the node:cluster primary',
  relayNotWorker: () => 'listener.relay: this process is not a node:cluster worker (no IPC channel to a primary)',
  relayNoAnswer: () => 'the relay did not answer',

  // invalidation, coalescing, schema, options
  broadcastFailed: (what: string, why: string) => `${what} failed (local state was invalidated, peers were not notified): ${why}`,
  invalidationUnconfirmed: (what: string, why: string) =>
    `${what} committed and peers will apply it, but their acknowledgements could not be awaited (strong consistency): ${why}`,
  coalesceTimeout: (url: string, ms: number) => `${url}: another process has been computing it for over ${ms} ms (coalesceWaitTimeoutMs)`,
  databaseUnavailable: (why: string) => `database unavailable: ${why}`,
  fenceBusy: (what: string, ms: number) =>
    `${what} could not enter the fence within ${ms} ms (fenceWaitMs): an invalidation touching the same modules, or a clear, is still in flight; nothing was deleted or broadcast`,
  noStatusRow: (fn: string) => `${fn} returned no status row`,
  notInFenceLog: (seq: string) => `invalidation ${seq} is not in the fence log any more`,
  schemaMissing: () =>
    'module-cache tables are missing or out of date: add `moduleCacheMigrations` to your DataSource `migrations` and run them (e.g. `migrationsRun: true`)',
  invalidOptions: (problems: string[]) => `invalid module-cache options: ${problems.join('; ')}`,
  invalidOption: (path: string, why: string) => `invalid module-cache options: ${path}: ${why}`,
  notPostgres: (type: string) =>
    `invalid module-cache options: the TypeORM DataSource must be a PostgreSQL one (type: 'postgres'), got type: '${type}'`,
  dataSourceNameFromFactory: () =>
    'invalid module-cache options: dataSourceName: pass it to forRootAsync({ dataSourceName, useFactory }) itself, not in what useFactory returns (the DataSource to inject must be known when the module is declared)',
  noSource: () => 'invalid module-cache options: source: pass options.source or provide DEFINITION_SOURCE in an imported module',
  wireFormatSeed: () =>
    "wireFormat: 'seed' is deprecated (it will be removed in the next minor version): use 'boxel', the same payloads under the name of the realm server that reads them",
  promClientMissing: (why: string) =>
    `invalid module-cache options: metrics: needs the optional peer dependency prom-client (npm install prom-client@^15): ${why}`,
} as const;
