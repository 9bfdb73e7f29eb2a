import { isOrigin } from './fields';
import { SIGNATURE, isSignedBy, sign } from './signing';

/**
 * Strong consistency's two shapes.
 *
 * The sync marker, on the invalidation channel (its control channel in `wireFormat: 'boxel'`), sent
 * after an invalidation with sequence `q` committed: `{"k":"sync","q":"SEQ","o":ORIGIN,"t":TOKEN[,"s":SIG]}`
 * (SIG over ["sync", q, null, o]: the token is not signed, because the database adds it).
 * Notifications arrive in commit order, across channels too (Postgres has one queue for all of
 * them), so a peer that sees it has applied that invalidation, and acknowledges
 * — counted only if TOKEN is that invalidation's fence-log token, which nobody can read before it
 * commits (a forged marker for an invalidation still to come fails there). So the marker is
 * built in two halves here and the database splices the token between them (`syncMarkerSql`).
 *
 * The acknowledgement, on the ack channel: the acknowledged sequence in decimal, sent by the
 * database in the statement that records it (`ackPayloadSql`). Invalidators do not parse it:
 * any notification on the ack channel only wakes them to re-read module_cache_peers, so a forged
 * one costs a read and proves nothing.
 */

/** A strong invalidation's marker: everything committed up to `seq` has been delivered before it. */
export interface SyncMarker {
  seq: string;
  origin: string;
  /** The invalidation's fence-log token: an acknowledgement counts only if it matches. */
  token: string;
}

const TOKEN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SEQ = /^[0-9]{1,19}$/;
const KEYS = ['k', 'q', 'o', 't', 's'];

const signedParts = (seq: string, origin: string): unknown[] => ['sync', seq, null, origin];

/** The marker of invalidation `seq` without its token: the database puts the token between `before` and `after`. */
export function syncMarkerAround(seq: string, options: { origin: string; signingSecret?: string }): { before: string; after: string } {
  const before = `{"k":"sync","q":${JSON.stringify(seq)},"o":${JSON.stringify(options.origin)},"t":"`;
  if (options.signingSecret === undefined) return { before, after: '"}' };
  return { before, after: `","s":"${sign(signedParts(seq, options.origin), options.signingSecret)}"}` };
}

/**
 * The SQL text expression of a whole marker, from the SQL expressions of its halves and of the
 * token (a uuid): `before || token::text || after`.
 */
export const syncMarkerSql = (before: string, token: string, after: string): string => `${before} || ${token}::text || ${after}`;

/** The SQL text expression of an acknowledgement's payload, from the SQL expression of the acknowledged sequence. */
export const ackPayloadSql = (seq: string): string => `${seq}::text`;

export function isSyncPayload(payload: string): boolean {
  return payload.startsWith('{"k":"sync",');
}

/** The sequence, origin and token of a sync marker, or the reason it is rejected (never throws). */
export function parseSync(payload: string, options: { signingSecret?: string } = {}): SyncMarker | { reason: string } {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(payload) as Record<string, unknown>;
  } catch {
    return { reason: 'sync marker is not JSON' };
  }
  const { q, o, t, s } = v;
  if (Object.keys(v).some((key) => !KEYS.includes(key))) return { reason: 'unexpected key in sync marker' };
  if (typeof q !== 'string' || !SEQ.test(q) || typeof o !== 'string' || !isOrigin(o)) return { reason: 'malformed sync marker' };
  if (typeof t !== 'string' || !TOKEN.test(t)) return { reason: 'sync marker without a token' };
  if (options.signingSecret !== undefined) {
    if (typeof s !== 'string' || !SIGNATURE.test(s)) return { reason: 'unsigned sync marker while a signing secret is configured' };
    if (!isSignedBy(signedParts(q, o), options.signingSecret, s)) return { reason: 'sync marker signature mismatch' };
  }
  return { seq: q, origin: o, token: t };
}
