import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseRealmURL } from '../config/urls';
import { InvalidModuleURLError, InvalidRealmURLError } from '../errors';

/**
 * The wire format of the invalidation channel. Payloads are untrusted hints (any role can
 * NOTIFY any channel), so parsing is strict, total (never throws) and optionally signed.
 *
 *   {"k":"module","r":REALM,"m":[URL,...],"o":ORIGIN[,"s":SIG]}
 *   {"k":"realm","r":REALM,"o":ORIGIN[,"s":SIG]}
 *   {"k":"global","o":ORIGIN[,"s":SIG]}
 *
 * SIG is the hex HMAC-SHA256 of JSON.stringify([k, r ?? null, m ?? null, o]). Without a
 * configured secret a well-formed "s" is ignored (a signing peer can roll out first), and the
 * seed's payloads — the same shapes without "o" — are accepted as a peer's; with one, a missing
 * origin or a missing or wrong "s" is rejected.
 */
export type InvalidationTarget = { kind: 'module'; realm: string; urls: string[] } | { kind: 'realm'; realm: string } | { kind: 'global' };
/** `origin` is absent in the seed's format (then a process cannot tell its own echo from a peer's). */
export type InvalidationMessage = InvalidationTarget & { origin?: string };
export type WireFormat = 'module-cache' | 'seed';

/** Our own budget per payload, in UTF-8 bytes; Postgres refuses payloads of 8000 bytes or more. */
export const MAX_PAYLOAD_BYTES = 7000;
/** Postgres's hard limit: anything longer cannot have come through NOTIFY. */
const POSTGRES_PAYLOAD_LIMIT = 7999;
const MAX_ORIGIN_LENGTH = 255;
const SIGNATURE = /^[0-9a-f]{64}$/;
// The URL parser silently strips these, so a string containing them is not the URL it names.
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

export interface EncodeOptions {
  origin: string;
  signingSecret?: string;
  /** `seed`: only the seed's keys (k, r, m): no origin, no signature. */
  format?: WireFormat;
  /** Byte budget per payload; defaults to MAX_PAYLOAD_BYTES, at most 7999. */
  maxBytes?: number;
}

export type ParseResult = { ok: true; message: InvalidationMessage } | { ok: false; reason: string };

interface Wire {
  k: InvalidationMessage['kind'];
  r?: string;
  m?: string[];
  o?: string;
  s?: string;
}

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

function sign(wire: Wire, secret: string): string {
  return createHmac('sha256', secret)
    .update(JSON.stringify([wire.k, wire.r ?? null, wire.m ?? null, wire.o]))
    .digest('hex');
}

function serialise(wire: Wire, secret: string | undefined, format: WireFormat = 'module-cache'): string {
  // Key order k, r, m, o, s is part of the documented shape (and of the size arithmetic below).
  if (format === 'seed') return JSON.stringify({ k: wire.k, r: wire.r, m: wire.m });
  return JSON.stringify(secret === undefined ? wire : { ...wire, s: sign(wire, secret) });
}

function isHttpURL(s: string): boolean {
  if (s.length === 0 || CONTROL_CHARS.test(s) || s.startsWith(' ') || s.endsWith(' ')) return false;
  try {
    const { protocol } = new URL(s);
    return protocol === 'http:' || protocol === 'https:';
  } catch {
    return false;
  }
}

// The one realm rule (config/urls.ts), strictly: an untrusted realm must already be in canonical form.
const isRealmURL = (s: string): boolean => {
  try {
    return parseRealmURL(s) === s;
  } catch {
    return false;
  }
};
const isOrigin = (s: string): boolean => s.length > 0 && s.length <= MAX_ORIGIN_LENGTH && !CONTROL_CHARS.test(s);

/**
 * Encodes one invalidation as as few payloads as fit the byte budget (greedy packing of the
 * URL list). A URL too long for any payload degrades to one realm message (and a realm too
 * long for one degrades to a global message): coarser, never dropped. An empty URL list
 * encodes to no payloads. Throws on inputs the parser would reject: that is a caller bug.
 */
export function encodeInvalidations(target: InvalidationTarget, options: EncodeOptions): string[] {
  const { origin, format } = options;
  if (format === 'seed' && options.signingSecret !== undefined) throw new TypeError("the 'seed' format carries no signature");
  const signingSecret = options.signingSecret;
  const maxBytes = options.maxBytes ?? MAX_PAYLOAD_BYTES;
  if (!isOrigin(origin)) throw new TypeError(`invalidation origin must be 1-${MAX_ORIGIN_LENGTH} characters without control characters`);
  if (!Number.isInteger(maxBytes) || maxBytes > POSTGRES_PAYLOAD_LIMIT) {
    throw new RangeError(`maxBytes must be an integer of at most ${POSTGRES_PAYLOAD_LIMIT}, got ${maxBytes}`);
  }
  const global = serialise({ k: 'global', o: origin }, signingSecret, format);
  if (bytes(global) > maxBytes) throw new RangeError(`maxBytes ${maxBytes} cannot hold even a global invalidation message`);
  if (target.kind === 'global') return [global];

  if (!isRealmURL(target.realm))
    throw new InvalidRealmURLError(`invalidation realm must be an absolute http(s) URL ending with "/": ${target.realm}`);
  const realmMessage = serialise({ k: 'realm', r: target.realm, o: origin }, signingSecret, format);
  const realmOrCoarser = bytes(realmMessage) <= maxBytes ? realmMessage : global;
  if (target.kind === 'realm') return [realmOrCoarser];

  const urls = [...new Set(target.urls)];
  const bad = urls.find((u) => !isHttpURL(u));
  if (bad !== undefined) throw new InvalidModuleURLError(`invalidation URL must be an absolute http(s) URL: ${bad}`);
  if (urls.length === 0) return [];

  // Fixed cost of a module payload: everything but the URLs and their separating commas.
  const fixed = bytes(serialise({ k: 'module', r: target.realm, m: [], o: origin }, signingSecret, format));
  const payloads: string[] = [];
  let chunk: string[] = [];
  let chunkBytes = 0;
  let degraded = false;
  const flush = () => {
    if (chunk.length > 0) payloads.push(serialise({ k: 'module', r: target.realm, m: chunk, o: origin }, signingSecret, format));
    chunk = [];
    chunkBytes = 0;
  };
  for (const url of urls) {
    const cost = bytes(JSON.stringify(url));
    if (fixed + cost > maxBytes) {
      degraded = true;
      continue;
    }
    const separator = chunk.length > 0 ? 1 : 0;
    if (fixed + chunkBytes + separator + cost > maxBytes) flush();
    chunkBytes += (chunk.length > 0 ? 1 : 0) + cost;
    chunk.push(url);
  }
  flush();
  if (degraded) payloads.push(realmOrCoarser);
  return payloads;
}

const reject = (reason: string): ParseResult => ({ ok: false, reason });

/** Strict, total parser: anything but exactly one documented shape is `{ ok: false, reason }`. */
export function parseInvalidation(payload: unknown, options: { signingSecret?: string } = {}): ParseResult {
  try {
    return parseStrict(payload, options.signingSecret);
  } catch {
    return reject('unparseable payload');
  }
}

function parseStrict(payload: unknown, secret: string | undefined): ParseResult {
  if (typeof payload !== 'string') return reject('payload is not a string');
  // UTF-8 never takes fewer bytes than UTF-16 code units, so the cheap check goes first.
  if (payload.length > POSTGRES_PAYLOAD_LIMIT || bytes(payload) > POSTGRES_PAYLOAD_LIMIT) return reject('payload exceeds 7999 bytes');
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return reject('payload is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return reject('payload is not a JSON object');
  const obj = value as Record<string, unknown>;
  const { k, r, m, o, s } = obj;

  const allowed =
    k === 'module' ? ['k', 'r', 'm', 'o', 's'] : k === 'realm' ? ['k', 'r', 'o', 's'] : k === 'global' ? ['k', 'o', 's'] : undefined;
  if (!allowed) return reject(typeof k === 'string' ? `unknown kind ${JSON.stringify(k.slice(0, 20))}` : 'missing or non-string kind "k"');
  const extra = Object.keys(obj).find((key) => !allowed.includes(key));
  if (extra !== undefined) return reject(`unexpected key ${JSON.stringify(extra.slice(0, 20))} in ${k} message`);

  // The seed's payloads carry no origin; a signed one always does.
  if (o === undefined ? secret !== undefined : typeof o !== 'string' || !isOrigin(o)) return reject('missing or invalid origin "o"');
  if (k !== 'global' && (typeof r !== 'string' || !isRealmURL(r)))
    return reject('realm "r" must be an absolute http(s) URL ending with "/"');
  if (k === 'module') {
    if (!Array.isArray(m) || m.length === 0) return reject('module message needs a non-empty URL list "m"');
    if (!m.every((u): u is string => typeof u === 'string' && isHttpURL(u)))
      return reject('module URL list "m" holds a non-http(s) or invalid URL');
  }
  if (s !== undefined && (typeof s !== 'string' || !SIGNATURE.test(s))) return reject('signature "s" is not 64 hex characters');

  const wire = { k, r, m, o } as Wire;
  if (secret !== undefined) {
    if (s === undefined) return reject('unsigned payload while a signing secret is configured');
    const expected = Buffer.from(sign(wire, secret), 'hex');
    if (!timingSafeEqual(expected, Buffer.from(s as string, 'hex'))) return reject('signature mismatch');
  }

  const origin = o === undefined ? {} : { origin: o as string };
  const message: InvalidationMessage =
    k === 'module'
      ? { kind: 'module', realm: r as string, urls: m as string[], ...origin }
      : k === 'realm'
        ? { kind: 'realm', realm: r as string, ...origin }
        : { kind: 'global', ...origin };
  return { ok: true, message };
}

/**
 * A listener's self-probe: `{"k":"probe","o":ORIGIN,"n":NONCE}` on the invalidation channel.
 * Not an invalidation (parseInvalidation rejects it), so listeners filter probes out first.
 */
export function encodeProbe(origin: string): string {
  return JSON.stringify({ k: 'probe', o: origin, n: randomBytes(12).toString('hex') });
}

export function isProbePayload(payload: string): boolean {
  if (!payload.startsWith('{"k":"probe",')) return false;
  try {
    const v = JSON.parse(payload) as Record<string, unknown>;
    return Object.keys(v).length === 3 && typeof v.o === 'string' && typeof v.n === 'string';
  } catch {
    return false;
  }
}

const TOKEN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Strong consistency's marker, sent after an invalidation with sequence `q` committed:
 * `{"k":"sync","q":"SEQ","o":ORIGIN,"t":TOKEN[,"s":SIG]}` (SIG over ["sync", q, null, o]).
 * Notifications arrive in commit order, so a peer that sees it has applied that invalidation,
 * and acknowledges — counted only if TOKEN is that invalidation's fence-log token, which nobody
 * can read before it commits (a forged marker for an invalidation still to come fails there).
 * The database puts the token between the two halves returned here.
 */
export function syncMarkerAround(seq: string, options: Pick<EncodeOptions, 'origin' | 'signingSecret'>): { before: string; after: string } {
  const before = `{"k":"sync","q":${JSON.stringify(seq)},"o":${JSON.stringify(options.origin)},"t":"`;
  if (options.signingSecret === undefined) return { before, after: '"}' };
  const s = createHmac('sha256', options.signingSecret)
    .update(JSON.stringify(['sync', seq, null, options.origin]))
    .digest('hex');
  return { before, after: `","s":"${s}"}` };
}

export function isSyncPayload(payload: string): boolean {
  return payload.startsWith('{"k":"sync",');
}

/** The sequence, origin and token of a sync marker, or the reason it is rejected (never throws). */
export function parseSync(
  payload: string,
  options: { signingSecret?: string } = {},
): { seq: string; origin: string; token: string } | { reason: string } {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(payload) as Record<string, unknown>;
  } catch {
    return { reason: 'sync marker is not JSON' };
  }
  const { q, o, t, s } = v;
  const keys = Object.keys(v);
  if (keys.some((key) => !['k', 'q', 'o', 't', 's'].includes(key))) return { reason: 'unexpected key in sync marker' };
  if (typeof q !== 'string' || !/^[0-9]{1,19}$/.test(q) || typeof o !== 'string' || !isOrigin(o))
    return { reason: 'malformed sync marker' };
  if (typeof t !== 'string' || !TOKEN.test(t)) return { reason: 'sync marker without a token' };
  if (options.signingSecret !== undefined) {
    if (typeof s !== 'string' || !SIGNATURE.test(s)) return { reason: 'unsigned sync marker while a signing secret is configured' };
    const expected = createHmac('sha256', options.signingSecret)
      .update(JSON.stringify(['sync', q, null, o]))
      .digest();
    if (!timingSafeEqual(expected, Buffer.from(s, 'hex'))) return { reason: 'sync marker signature mismatch' };
  }
  return { seq: q, origin: o, token: t };
}
