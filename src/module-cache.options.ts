import type { ClientConfig } from 'pg';
import { z } from 'zod';
import { DEFAULT_EXTENSIONS, MODULE_CACHE_COMPUTED_CHANNEL, MODULE_CACHE_INVALIDATED_CHANNEL } from './module-cache.constants';
import { ModuleCacheOptionsError } from './errors';
import { messages } from './messages';
import {
  isRegistryLike,
  METRIC_PREFIX,
  resolveMetricsOptions,
  type ModuleCacheMetricsOptions,
  type ResolvedMetricsOptions,
} from './observability/metrics-options';
import type { DefinitionSource } from './types';

/** Postgres identifiers we accept as channel names: they are also quoted wherever used. */
export const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export interface ListenerOptions {
  /** A `pg` ClientConfig for the dedicated LISTEN connection; derived from the DataSource when absent. */
  connection?: ClientConfig;
  /** `application_name` of the listener's connection (visible in pg_stat_activity). */
  applicationName?: string;
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  /** How long the startup self-probe waits for its own NOTIFY. */
  selfProbeTimeoutMs?: number;
}

export interface ModuleCacheOptions {
  /** The computation to cache; alternatively provide DEFINITION_SOURCE yourself. */
  source?: DefinitionSource;
  /** Registered realm URLs (each must end with `/`). */
  realms: string[];
  channel?: string;
  extensions?: string[];
  errorTtlMs?: number;
  memory?: { maxEntries?: number } | false;
  listener?: ListenerOptions | false;
  coalesceAcrossProcesses?: boolean;
  /** Channel on which finished computations wake waiting processes. */
  computedChannel?: string;
  /** How long a process waits for a peer's computation before giving up. */
  coalesceWaitTimeoutMs?: number;
  /** How often a waiting process re-tries the claim, to take over from a peer that died. */
  coalesceTakeoverCheckMs?: number;
  signingSecret?: string;
  /** Name of the TypeORM DataSource to use (a module-definition extra: also top-level in forRootAsync). */
  dataSourceName?: string;
  /** A source call that takes longer is aborted and fails the lookup. */
  sourceTimeoutMs?: number;
  /** Discarded (invalidated mid-flight) computations are retried at most this many times. */
  maxRetries?: number;
  /** How long the database remembers a module invalidation for fencing in-flight writes. */
  fenceRetentionMs?: number;
  /** Prometheus metrics through prom-client (optional peer dependency); off by default. */
  metrics?: boolean | ModuleCacheMetricsOptions;
}

export interface ResolvedModuleCacheOptions {
  source?: DefinitionSource;
  realms: string[];
  channel: string;
  extensions: string[];
  errorTtlMs: number;
  memory: { maxEntries: number } | false;
  listener:
    | {
        connection?: ClientConfig;
        applicationName: string;
        reconnect: { initialDelayMs: number; maxDelayMs: number };
        selfProbeTimeoutMs: number;
      }
    | false;
  coalesceAcrossProcesses: boolean;
  computedChannel: string;
  coalesceWaitTimeoutMs: number;
  coalesceTakeoverCheckMs: number;
  signingSecret?: string;
  dataSourceName?: string;
  sourceTimeoutMs: number;
  maxRetries: number;
  fenceRetentionMs: number;
  metrics: ResolvedMetricsOptions | false;
}

const positiveInt = z.number().int().positive();
const realmURL = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && s.endsWith('/') && !u.search && !u.hash && u.href === s;
  } catch {
    return false;
  }
}, 'must be an absolute, canonical http(s) URL ending with "/" and without query or hash');

const schema = z
  .object({
    source: z
      .custom<DefinitionSource>(
        (v) => typeof v === 'object' && v !== null && typeof (v as DefinitionSource).load === 'function',
        'must be an object with a load(moduleURL, context) method',
      )
      .optional(),
    realms: z.array(realmURL).min(1, 'must list at least one realm URL'),
    channel: z.string().regex(CHANNEL_NAME, 'must match /^[a-z_][a-z0-9_]{0,62}$/').default(MODULE_CACHE_INVALIDATED_CHANNEL),
    extensions: z
      .array(z.string().regex(/^\.[A-Za-z0-9]+$/, 'each must look like ".ts"'))
      .min(1)
      .default([...DEFAULT_EXTENSIONS]),
    errorTtlMs: z.number().int().nonnegative().default(30_000),
    memory: z.union([z.literal(false), z.object({ maxEntries: positiveInt.default(10_000) }).strict()]).default({ maxEntries: 10_000 }),
    listener: z
      .union([
        z.literal(false),
        z
          .object({
            connection: z.record(z.string(), z.unknown()).optional(),
            applicationName: z.string().min(1).max(63).default('module-cache-listener'),
            reconnect: z
              .object({ initialDelayMs: positiveInt.default(100), maxDelayMs: positiveInt.default(10_000) })
              .strict()
              .default({ initialDelayMs: 100, maxDelayMs: 10_000 }),
            selfProbeTimeoutMs: positiveInt.default(5_000),
          })
          .strict(),
      ])
      .default({
        applicationName: 'module-cache-listener',
        reconnect: { initialDelayMs: 100, maxDelayMs: 10_000 },
        selfProbeTimeoutMs: 5_000,
      }),
    coalesceAcrossProcesses: z.boolean().default(true),
    computedChannel: z.string().regex(CHANNEL_NAME, 'must match /^[a-z_][a-z0-9_]{0,62}$/').default(MODULE_CACHE_COMPUTED_CHANNEL),
    coalesceWaitTimeoutMs: positiveInt.default(120_000),
    coalesceTakeoverCheckMs: positiveInt.default(1_000),
    signingSecret: z.string().min(16, 'must be at least 16 characters').optional(),
    dataSourceName: z.string().min(1).optional(),
    sourceTimeoutMs: positiveInt.default(60_000),
    maxRetries: z.number().int().min(0).max(100).default(3),
    fenceRetentionMs: positiveInt.default(15 * 60_000),
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
      .default(false)
      .transform(resolveMetricsOptions),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.listener !== false && o.listener.reconnect.initialDelayMs > o.listener.reconnect.maxDelayMs) {
      ctx.addIssue({ code: 'custom', path: ['listener', 'reconnect', 'initialDelayMs'], message: 'must not exceed maxDelayMs' });
    }
    if (o.sourceTimeoutMs * (o.maxRetries + 1) >= o.fenceRetentionMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['fenceRetentionMs'],
        message: 'must exceed sourceTimeoutMs × (maxRetries + 1), or slow computations could outlive the fence',
      });
    }
    if (o.computedChannel === o.channel) {
      ctx.addIssue({ code: 'custom', path: ['computedChannel'], message: 'must differ from channel' });
    }
  });

/** Validates user options and fills defaults; throws ModuleCacheOptionsError naming each bad option. */
export function resolveModuleCacheOptions(options: unknown): ResolvedModuleCacheOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ModuleCacheOptionsError(messages.invalidOptions(['(options): expected an object']));
  }
  const result = schema.safeParse(options);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(options)'}: ${i.message}`);
    throw new ModuleCacheOptionsError(messages.invalidOptions(problems));
  }
  const o = result.data;
  return {
    ...o,
    realms: [...new Set(o.realms)],
    listener: o.listener === false ? false : { ...o.listener, connection: o.listener.connection as ClientConfig | undefined },
  } as ResolvedModuleCacheOptions;
}
