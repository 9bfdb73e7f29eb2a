import type { ClientConfig } from 'pg';
import { z } from 'zod';
import { ModuleCacheOptionsError } from '../errors';
import { messages } from '../messages';
import { leaseMargin } from './lease';
import { isRegistryLike, METRIC_PREFIX, resolveMetricsOptions } from './metrics';
import type { DefinitionSource } from '../types';
import { DEFAULTS } from './defaults';
import { channel, controlChannelProblem, positiveInt, realmURL, wireFormat } from './fields';
import { listenerDefaults, listenerSchema } from './listener';
import { isPrefixIdentifier } from './urls';

/**
 * The module's options: one zod schema, from which the option types come, with the defaults of
 * `config/defaults.ts`. `resolveModuleCacheOptions` validates what the user gives and returns
 * the resolved options (every default filled in).
 */

export { CHANNEL_NAME, controlChannelFor } from './fields';
export type { ListenerOptions } from './listener';

/** The listener's own connection settings: a `pg` ClientConfig. */
export type ListenerConnectionOptions = ClientConfig;

/** `scopeFor`: the cache scope of a lookup in `realmURL` for `user` (undefined when the caller named none). */
export type ScopeFor = (realmURL: string, user: string | undefined) => string | Promise<string>;

const schema = z
  .object({
    /** The computation to cache; alternatively provide DEFINITION_SOURCE yourself. */
    source: z
      .custom<DefinitionSource>(
        (v) => typeof v === 'object' && v !== null && typeof (v as DefinitionSource).load === 'function',
        'must be an object with a load(moduleURL, context) method',
      )
      .optional(),
    /**
     * Realms registered from the start, normalised as registerRealm() normalises them (parseRealmURL), so
     * both take the same spellings; more come and go with registerRealm()/unregisterRealm().
     */
    realms: z.array(realmURL).default(() => [...DEFAULTS.realms]),
    /**
     * The cache scope of a lookup, from its realm and `LookupOptions.user` (sync or async): e.g. one
     * shared `public` entry for a public realm, one per user for a private one. An explicit
     * `LookupOptions.scope` wins.
     */
    scopeFor: z
      .custom<ScopeFor>((v) => typeof v === 'function', 'must be a function (realmURL, user) => scope | Promise<scope>')
      .optional(),
    /** Prefix identifiers mapped to URLs for lookups, invalidations and stored dependencies: `{ '@scope/name/': 'https://host/base/' }`. */
    prefixes: z.record(z.string(), realmURL).default(() => ({ ...DEFAULTS.prefixes })),
    /**
     * How a module whose own computation errored gets its dependencies' errors: `cached` (the
     * reference server's way: from cached entries only, transitively, never computing a dependency) or
     * `compute` (every in-realm dependency is looked up, so computed, and its errors attached).
     */
    dependencyErrors: z.enum(['cached', 'compute']).default(DEFAULTS.dependencyErrors),
    /** Error documents are stored whole up to this many bytes of JSON, then clamped with a visible marker. */
    maxErrorBytes: z.number().int().min(1024).default(DEFAULTS.maxErrorBytes),
    /**
     * `boxel`: emit payloads with the Boxel realm server's keys only (no origin, no signature), for a
     * database shared with it; heartbeat probes and sync markers then go on `<channel>__control`.
     * `seed`, its former name, is a deprecated alias resolved to `boxel`.
     */
    wireFormat: wireFormat.default(DEFAULTS.wireFormat),
    /**
     * `strong`: invalidate(), clearRealm() and clearAll() resolve only once every live peer has
     * applied them, or its lease ran out; memory is trusted only while this process's lease holds.
     * Every process sharing the table must use the same mode.
     */
    consistency: z.enum(['eventual', 'strong']).default(DEFAULTS.consistency),
    /** Strong consistency: how long a heartbeat's lease renewal holds (and so the longest an invalidation waits for a silent peer). */
    leaseMs: positiveInt.max(600_000).default(DEFAULTS.leaseMs),
    /**
     * Hot statements as named prepared statements on the DataSource's pool (planned once per
     * connection). `false` behind a transaction-pooling proxy that does not keep them (PgBouncer
     * before 1.21, or without max_prepared_statements); the listener should then connect to the
     * server directly (`listener.connection`).
     */
    preparedStatements: z.boolean().default(DEFAULTS.preparedStatements),
    /** Strong consistency: channel on which peers announce their acknowledgements. */
    ackChannel: channel.default(DEFAULTS.ackChannel),
    /** NOTIFY channel of invalidations. */
    channel: channel.default(DEFAULTS.channel),
    /** Executable extensions: alias trimming and extensionless candidates, in order. */
    extensions: z
      .array(z.string().regex(/^\.[A-Za-z0-9]+$/, 'each must look like ".ts"'))
      .min(1)
      .default(() => [...DEFAULTS.extensions]),
    /** An error entry older than this counts as a miss. */
    errorTtlMs: z.number().int().nonnegative().default(DEFAULTS.errorTtlMs),
    /** The bounded LRU memory tier, or `false` for none. */
    memory: z
      .union([z.literal(false), z.object({ maxEntries: positiveInt.default(DEFAULTS.memory.maxEntries) }).strict()])
      .default(() => ({ ...DEFAULTS.memory })),
    /** The dedicated LISTEN connection; `false` disables receiving broadcasts (and coalescing). */
    listener: z.union([z.literal(false), listenerSchema]).default(listenerDefaults),
    /** One computation per key across all processes (needs the listener). */
    coalesceAcrossProcesses: z.boolean().default(DEFAULTS.coalesceAcrossProcesses),
    /** Channel on which finished computations wake waiting processes. */
    computedChannel: channel.default(DEFAULTS.computedChannel),
    /** How long a process waits for a peer's computation before giving up. */
    coalesceWaitTimeoutMs: positiveInt.default(DEFAULTS.coalesceWaitTimeoutMs),
    /** How often a waiting process re-tries the claim, to take over from a peer that died. */
    coalesceTakeoverCheckMs: positiveInt.default(DEFAULTS.coalesceTakeoverCheckMs),
    /** HMAC-SHA256 key: every payload is signed, unsigned or forged ones are rejected. */
    signingSecret: z.string().min(16, 'must be at least 16 characters').optional(),
    /** A source call that takes longer is aborted and fails the lookup. */
    sourceTimeoutMs: positiveInt.default(DEFAULTS.sourceTimeoutMs),
    /** Discarded (invalidated mid-flight) computations are retried at most this many times. */
    maxRetries: z.number().int().min(0).max(100).default(DEFAULTS.maxRetries),
    /** How long the database remembers an invalidation for fencing in-flight writes. */
    fenceRetentionMs: positiveInt.default(DEFAULTS.fenceRetentionMs),
    /**
     * How long a persist or an invalidation waits to enter the fence (held by an invalidation of
     * the same modules, or a clear): a persist then serves its result unpersisted, an invalidation
     * fails with E_FENCE_BUSY. 0 waits forever.
     */
    fenceWaitMs: z.number().int().min(0).max(2_147_483_647).default(DEFAULTS.fenceWaitMs),
    /** prewarm(): how many modules it computes at once. */
    prewarm: z
      .object({ concurrency: positiveInt.max(256).default(DEFAULTS.prewarm.concurrency) })
      .strict()
      .default(() => ({ ...DEFAULTS.prewarm })),
    /** Prometheus metrics through prom-client (optional peer dependency): `true`, or `{ registry, prefix }`. */
    metrics: z
      .union(
        [
          z.boolean(),
          z
            .object({
              // refine, not z.custom: a custom check aborts the union and hides this message.
              registry: z.unknown().refine(isRegistryLike, 'must be a prom-client Registry').optional(),
              prefix: z.string().regex(METRIC_PREFIX, 'must be a Prometheus metric name prefix (/^[a-zA-Z_:][a-zA-Z0-9_:]*$/)').optional(),
            })
            .strict(),
        ],
        { error: 'must be true, false or { registry?, prefix? }' },
      )
      .default(DEFAULTS.metrics)
      .transform(resolveMetricsOptions),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.sourceTimeoutMs * (o.maxRetries + 1) >= o.fenceRetentionMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['fenceRetentionMs'],
        message: 'must exceed sourceTimeoutMs × (maxRetries + 1), or slow computations could outlive the fence',
      });
    }
    for (const key of Object.keys(o.prefixes)) {
      // Zod reports a bad record key without its message: check keys here, naming the key.
      if (!isPrefixIdentifier(key)) {
        ctx.addIssue({
          code: 'custom',
          path: ['prefixes', key],
          message: 'keys must be prefix identifiers ending with "/" (e.g. "@scope/name/"), not URLs',
        });
      }
    }
    if (o.wireFormat === 'boxel' && o.signingSecret !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['wireFormat'],
        message: "'boxel' payloads carry no signature: it cannot be combined with signingSecret",
      });
    }
    if (o.listener !== false && o.listener.relay && o.listener.connection !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['listener', 'connection'],
        message: 'the relay connects for the workers: give it the connection instead',
      });
    }
    const control = controlChannelProblem({ channel: o.channel, wireFormat: o.wireFormat, others: [o.computedChannel, o.ackChannel] });
    if (control) ctx.addIssue({ code: 'custom', path: ['channel'], message: control });
    if (o.computedChannel === o.channel) {
      ctx.addIssue({ code: 'custom', path: ['computedChannel'], message: 'must differ from channel' });
    }
    if (o.consistency === 'strong') {
      if (o.listener === false) {
        ctx.addIssue({ code: 'custom', path: ['consistency'], message: "'strong' needs the listener (peers acknowledge what it hears)" });
      } else if (o.listener.heartbeat.intervalMs + o.listener.heartbeat.timeoutMs + leaseMargin(o.leaseMs) >= o.leaseMs) {
        ctx.addIssue({
          code: 'custom',
          path: ['leaseMs'],
          message: 'must exceed listener.heartbeat.intervalMs + timeoutMs plus a margin, or leases lapse between renewals',
        });
      }
      if (o.ackChannel === o.channel || o.ackChannel === o.computedChannel) {
        ctx.addIssue({ code: 'custom', path: ['ackChannel'], message: 'must differ from channel and computedChannel' });
      }
    }
  });

/** What `ModuleCacheModule.forRoot()` (or a `forRootAsync` factory) takes (an interface, so declarations can name it). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface ModuleCacheOptions extends z.input<typeof schema> {}
/** The options with every default filled in, as the providers receive them. */
export type ResolvedModuleCacheOptions = z.output<typeof schema>;

/** Strong consistency renews leases through the heartbeat: unless told otherwise, beat faster (DEFAULTS.strongHeartbeat). */
function withStrongDefaults(options: Record<string, unknown>): Record<string, unknown> {
  if (options.consistency !== 'strong') return options;
  const listener = options.listener;
  if (listener === false || (typeof listener === 'object' && listener !== null && 'heartbeat' in listener)) return options;
  const heartbeat = { ...DEFAULTS.strongHeartbeat };
  return { ...options, listener: { ...(typeof listener === 'object' && listener !== null ? listener : {}), heartbeat } };
}

/**
 * `false | { … }` options (listener, memory) fail as a union, whose own message is only "Invalid
 * input": when a value is an object, what its object branch says is the useful explanation.
 */
function explainIssue(issue: z.core.$ZodIssue): Array<{ path: PropertyKey[]; message: string }> {
  if (issue.code !== 'invalid_union' || !issue.errors.length) return [issue];
  const matched = issue.errors.find((errors) => errors.some((e) => e.path.length > 0));
  // No branch got past the type check: a union's own message (when it has one) says it best.
  if (!matched && issue.message !== 'Invalid input') return [issue];
  const branch = matched ?? issue.errors[issue.errors.length - 1];
  return branch.flatMap(explainIssue).map((e) => ({ path: [...issue.path, ...e.path], message: e.message }));
}

/** Validates user options and fills defaults; throws ModuleCacheOptionsError naming each bad option. */
export function resolveModuleCacheOptions(options: unknown): ResolvedModuleCacheOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ModuleCacheOptionsError(messages.invalidOptions(['(options): expected an object']));
  }
  // forRoot() strips its extras; only a forRootAsync factory can hand this in, and too late.
  if ('dataSourceName' in options) throw new ModuleCacheOptionsError(messages.dataSourceNameFromFactory());
  const result = schema.safeParse(withStrongDefaults(options as Record<string, unknown>));
  if (!result.success) {
    const problems = result.error.issues
      .flatMap(explainIssue)
      .map((i) => `${i.path.length ? i.path.join('.') : '(options)'}: ${i.message}`);
    throw new ModuleCacheOptionsError(messages.invalidOptions(problems));
  }
  // Two spellings of one realm (`HTTPS://h/r/`, `https://h/r/`) are one realm once normalised.
  return { ...result.data, realms: [...new Set(result.data.realms)] };
}
