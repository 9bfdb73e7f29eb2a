import type { ClientConfig } from 'pg';
import { z } from 'zod';
import { parseRealmURL } from './urls';

/** Field schemas shared by the module's options and the cluster relay's. */

/** Postgres identifiers we accept as channel names: they are also quoted wherever used. */
export const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export const positiveInt = z.number().int().positive();

export const channel = z.string().regex(CHANNEL_NAME, `must match ${CHANNEL_NAME}`);

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
