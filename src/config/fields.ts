import type { ClientConfig } from 'pg';
import { z } from 'zod';

/** Field schemas shared by the module's options and the cluster relay's. */

/** Postgres identifiers we accept as channel names: they are also quoted wherever used. */
export const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export const positiveInt = z.number().int().positive();

export const channel = z.string().regex(CHANNEL_NAME, `must match ${CHANNEL_NAME}`);

/** `connection` options: a `pg` ClientConfig (checked only for being an object; pg validates the rest when it connects). */
export const clientConfig = (message = 'must be a pg ClientConfig object') =>
  z.custom<ClientConfig>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), message);

/** A realm (or a prefix's target), already in canonical form. */
export const realmURL = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && s.endsWith('/') && !u.search && !u.hash && u.href === s;
  } catch {
    return false;
  }
}, 'must be an absolute, canonical http(s) URL ending with "/" and without query or hash');
