import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The one HMAC of the wire. Payloads are untrusted hints (any role can NOTIFY any channel), so
 * with a `signingSecret` every invalidation and sync marker carries `"s"`: the hex HMAC-SHA256
 * of `JSON.stringify(parts)`. Each shape says which parts it signs (invalidations
 * `[k, r ?? null, m ?? null, o]`, sync markers `["sync", q, null, o]`); the signing itself is
 * here only, so the encoders and the parsers cannot drift apart.
 */

/** What a signature looks like on the wire: 64 lowercase hex characters. */
export const SIGNATURE = /^[0-9a-f]{64}$/;

export function sign(parts: readonly unknown[], secret: string): string {
  return createHmac('sha256', secret).update(JSON.stringify(parts)).digest('hex');
}

/** Whether `signature` (already checked against SIGNATURE) is `parts`'s, in constant time. */
export function isSignedBy(parts: readonly unknown[], secret: string, signature: string): boolean {
  return timingSafeEqual(Buffer.from(sign(parts, secret), 'hex'), Buffer.from(signature, 'hex'));
}
