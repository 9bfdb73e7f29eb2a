import type { ClientConfig } from 'pg';
import { z } from 'zod';
import { DEFAULTS } from './defaults';
import { channel, clientConfig, controlChannelProblem, positiveInt, wireFormat } from './fields';

/**
 * The dedicated connection's settings: the `listener` option, and the part of them the cluster
 * relay (which holds the dedicated connection for its workers) shares, so that both validate and
 * default them the same way.
 */

/** What `listener.connection` takes. Named here so that the schemas' declarations can name it (TS2883). */
export type ListenerConnectionConfig = ClientConfig;

const applicationName = z.string().min(1).max(63);

/** Capped exponential backoff between reconnect attempts, with jitter. */
const reconnect = z
  .object({
    initialDelayMs: positiveInt.default(DEFAULTS.listener.reconnect.initialDelayMs),
    maxDelayMs: positiveInt.default(DEFAULTS.listener.reconnect.maxDelayMs),
  })
  .strict()
  .refine((r) => r.initialDelayMs <= r.maxDelayMs, { path: ['initialDelayMs'], message: 'must not exceed maxDelayMs' })
  .default(() => ({ ...DEFAULTS.listener.reconnect }));

export const listenerSchema = z
  .object({
    /** A `pg` ClientConfig for the dedicated LISTEN connection; derived from the DataSource when absent. */
    connection: clientConfig().optional(),
    /** `application_name` of the listener's connection (visible in pg_stat_activity). */
    applicationName: applicationName.default(DEFAULTS.listener.applicationName),
    reconnect,
    /**
     * Every `intervalMs` a probe NOTIFY goes out through the DataSource pool and must reach the
     * listener within `timeoutMs`; memory is trusted only for `intervalMs + timeoutMs` after the
     * last probe that did. A deaf listener is found out (and fresh data served) within their sum.
     * (`consistency: 'strong'` has a faster default: see withStrongDefaults in options.ts.)
     */
    heartbeat: z
      .object({
        intervalMs: positiveInt.default(DEFAULTS.listener.heartbeat.intervalMs),
        timeoutMs: positiveInt.default(DEFAULTS.listener.heartbeat.timeoutMs),
      })
      .strict()
      .default(() => ({ ...DEFAULTS.listener.heartbeat })),
    /** Longest a claim statement on the dedicated connection may take; the lookup then computes without coalescing. */
    queryTimeoutMs: positiveInt.default(DEFAULTS.listener.queryTimeoutMs),
    /**
     * Cluster relay mode: this node:cluster worker uses its primary's connection (a
     * ModuleCacheClusterRelay from `@module-cache/nestjs/cluster`) instead of one of its own.
     */
    relay: z.boolean().default(DEFAULTS.listener.relay),
  })
  .strict();

/** The `listener` option when it is not `false`, every default filled in. */
export const listenerDefaults = (): z.output<typeof listenerSchema> => listenerSchema.parse({});

/**
 * `ModuleCacheClusterRelay`'s options: the listener's reconnect and claim settings (the same
 * fields, defaults and checks), plus what the relay needs instead of the DataSource: the
 * connection and the channels its workers use.
 */
export const clusterRelaySchema = listenerSchema
  .pick({ reconnect: true, queryTimeoutMs: true })
  .extend({
    /** The database to LISTEN on: the server itself, not a transaction-pooling proxy. */
    connection: clientConfig('is required (a pg ClientConfig for the server itself)'),
    /** The channels the workers use, if not the defaults (`channel`, `computedChannel`, `ackChannel` options). */
    channel: channel.default(DEFAULTS.channel),
    computedChannel: channel.default(DEFAULTS.computedChannel),
    ackChannel: channel.default(DEFAULTS.ackChannel),
    /** The workers' `wireFormat`: with `seed` the relay also LISTENs on their control channel (`<channel>__control`). */
    wireFormat: wireFormat.default(DEFAULTS.wireFormat),
    applicationName: applicationName.default(DEFAULTS.clusterRelay.applicationName),
  })
  .superRefine((o, ctx) => {
    const problem = controlChannelProblem({ channel: o.channel, wireFormat: o.wireFormat, others: [o.computedChannel, o.ackChannel] });
    if (problem) ctx.addIssue({ code: 'custom', path: ['channel'], message: problem });
  });

/** The `listener` option (when not `false`), as the user writes it. */
export type ListenerOptions = z.input<typeof listenerSchema>;
