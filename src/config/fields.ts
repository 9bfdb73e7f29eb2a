import type { ClientConfig } from 'pg';
import { z } from 'zod';
import { parseRealmURL } from './urls';

/** Field schemas shared by the module's options and the cluster relay's. */

/** Postgres identifiers we accept as channel names: they are also quoted wherever used. */
export const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Postgres's identifier limit (NAMEDATALEN - 1): a longer channel name is refused by pg_notify and truncated by LISTEN. */
export const MAX_CHANNEL_BYTES = 63;

/**
 * `wireFormat: 'boxel'`: the channel of everything but invalidations (heartbeat probes, sync
 * markers), derived from the invalidation channel, so that the reference's servers, which LISTEN
 * on that one, only ever see payloads they parse. `module_cache_invalidated` → `module_cache_invalidated__control`.
 */
export const CONTROL_CHANNEL_SUFFIX = '__control';
export const controlChannelOf = (channel: string): string => `${channel}${CONTROL_CHANNEL_SUFFIX}`;

/** Where probes and sync markers go: the invalidation channel itself in the package's own format, its control channel in 'boxel'. */
export const controlChannelFor = (options: { channel: string; wireFormat: 'module-cache' | 'boxel' }): string =>
  options.wireFormat === 'boxel' ? controlChannelOf(options.channel) : options.channel;

/** Why `options.channel` cannot have a control channel in `wireFormat: 'boxel'`, or undefined. */
export function controlChannelProblem(options: {
  channel: string;
  wireFormat: 'module-cache' | 'boxel';
  others: readonly string[];
}): string | undefined {
  if (options.wireFormat !== 'boxel') return undefined;
  const control = controlChannelOf(options.channel);
  if (control.length > MAX_CHANNEL_BYTES) {
    return (
      `with wireFormat 'boxel', probes and sync markers go on the control channel "${control}" derived from it, ` +
      `which exceeds Postgres's ${MAX_CHANNEL_BYTES}-byte identifier limit: use a channel of at most ` +
      `${MAX_CHANNEL_BYTES - CONTROL_CHANNEL_SUFFIX.length} characters`
    );
  }
  if (options.others.includes(control)) {
    return `with wireFormat 'boxel', its control channel "${control}" must differ from computedChannel and ackChannel`;
  }
  return undefined;
}

export const positiveInt = z.number().int().positive();

export const channel = z.string().regex(CHANNEL_NAME, `must match ${CHANNEL_NAME}`);

/** `seed`: the reference server's payload shapes (see wire/invalidation.ts); its probes and sync markers then use the control channel. */
/** `seed` is the deprecated former name of `boxel`, resolved to it. */
export const wireFormat = z
  .enum(['module-cache', 'boxel', 'seed'])
  .transform((format): 'module-cache' | 'boxel' => (format === 'seed' ? 'boxel' : format));

/** `connection` options: a `pg` ClientConfig (checked only for being an object; pg validates the rest when it connects). */
export const clientConfig = (message = 'must be a pg ClientConfig object') =>
  z.custom<ClientConfig>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), message);

/**
 * A realm (or a prefix's target), normalised by the one realm rule, so that `realms: ['HTTPS://h/r/']`
 * means what `registerRealm('HTTPS://h/r/')` means.
 */
export const realmURL = z.string().transform((s, ctx) => {
  try {
    return parseRealmURL(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute http(s) URL ending with "/" and without query or hash', input: s });
    return z.NEVER;
  }
});
