import { isPrefixIdentifier, isPrefixedURL, parseRealmURL } from '../config/urls';
import { InvalidModuleURLError, InvalidRealmURLError } from '../errors';
import { messages } from '../messages';
import { CONTROL_CHARS, MAX_ORIGIN_LENGTH, POSTGRES_PAYLOAD_LIMIT, isOrigin, utf8Bytes as bytes } from './fields';
import { SIGNATURE, isSignedBy, sign } from './signing';

/**
 * The wire format of the invalidation channel. Payloads are untrusted hints (any role can
 * NOTIFY any channel), so parsing is strict, total (never throws) and optionally signed.
 *
 *   {"k":"module","r":REALM,"m":[URL,...],"o":ORIGIN[,"s":SIG]}
 *   {"k":"realm","r":REALM,"o":ORIGIN[,"s":SIG]}
 *   {"k":"global","o":ORIGIN[,"s":SIG]}
 *
 * REALM is a canonical realm URL or, as the reference's servers send for a realm mounted under a
 * prefix, a prefix identifier (`@cardstack/base/`); each URL is an http(s) URL or a prefixed one
 * (`@cardstack/base/card-api.gts`). Prefixed forms are passed on as given: the listener resolves
 * them through the `prefixes` option (and rejects those no prefix maps). The encoder sends only
 * URLs.
 *
 * SIG is the HMAC (signing.ts) of [k, r ?? null, m ?? null, o]. Without a configured secret a
 * well-formed "s" is ignored (a signing peer can roll out first), and the reference server's
 * payloads — the same shapes without "o" — are accepted as a peer's; with one, a missing origin
 * or a missing or wrong "s" is rejected. The database encodes the same unsigned payloads itself
 * (`module_cache_module_payloads`, migration 1764300000000); test/e2e/wire-parity.test.ts holds
 * the two to byte-identical output.
 */
export type InvalidationTarget = { kind: 'module'; realm: string; urls: string[] } | { kind: 'realm'; realm: string } | { kind: 'global' };
/** `origin` is absent in the reference server's format (then a process cannot tell its own echo from a peer's). */
export type InvalidationMessage = InvalidationTarget & { origin?: string };
/**
 * `boxel`: the payload shape of the Boxel realm server's listener, the reference this package grew
 * from (the keys k, r, m only). `seed` is its deprecated former name, resolved to `boxel`.
 */
export type WireFormat = 'module-cache' | 'boxel';

/** Our own budget per payload, in UTF-8 bytes; Postgres refuses payloads of 8000 bytes or more. */
export const MAX_PAYLOAD_BYTES = 7000;

export interface EncodeOptions {
  origin: string;
  signingSecret?: string;
  /** `boxel`: only the realm server's keys (k, r, m): no origin, no signature. (`seed`: deprecated alias of `boxel`.) */
  format?: WireFormat | 'seed';
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

const signedParts = (wire: Wire): unknown[] => [wire.k, wire.r ?? null, wire.m ?? null, wire.o];

function serialise(wire: Wire, secret: string | undefined, format: WireFormat = 'module-cache'): string {
  // Key order k, r, m, o, s is part of the documented shape (and of the size arithmetic below).
  if (format === 'boxel') return JSON.stringify({ k: wire.k, r: wire.r, m: wire.m });
  return JSON.stringify(secret === undefined ? wire : { ...wire, s: sign(signedParts(wire), secret) });
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

/**
 * Encodes one invalidation as as few payloads as fit the byte budget (greedy packing of the
 * URL list). A URL too long for any payload degrades to one realm message (and a realm too
 * long for one degrades to a global message): coarser, never dropped. An empty URL list
 * encodes to no payloads. Throws on inputs the parser would reject: that is a caller bug.
 */
export function encodeInvalidations(target: InvalidationTarget, options: EncodeOptions): string[] {
  const { origin } = options;
  const format: WireFormat | undefined = options.format === 'seed' ? 'boxel' : options.format;
  if (format === 'boxel' && options.signingSecret !== undefined) throw new TypeError(messages.wireBoxelUnsigned());
  const signingSecret = options.signingSecret;
  const maxBytes = options.maxBytes ?? MAX_PAYLOAD_BYTES;
  if (!isOrigin(origin)) throw new TypeError(messages.wireBadOrigin(MAX_ORIGIN_LENGTH));
  if (!Number.isInteger(maxBytes) || maxBytes > POSTGRES_PAYLOAD_LIMIT) {
    throw new RangeError(messages.wireBadMaxBytes(POSTGRES_PAYLOAD_LIMIT, maxBytes));
  }
  const global = serialise({ k: 'global', o: origin }, signingSecret, format);
  if (bytes(global) > maxBytes) throw new RangeError(messages.wireBudgetTooSmall(maxBytes));
  if (target.kind === 'global') return [global];

  if (!isRealmURL(target.realm)) throw new InvalidRealmURLError(messages.wireBadRealm(target.realm));
  const realmMessage = serialise({ k: 'realm', r: target.realm, o: origin }, signingSecret, format);
  const realmOrCoarser = bytes(realmMessage) <= maxBytes ? realmMessage : global;
  if (target.kind === 'realm') return [realmOrCoarser];

  const urls = [...new Set(target.urls)];
  const bad = urls.find((u) => !isHttpURL(u));
  if (bad !== undefined) throw new InvalidModuleURLError(messages.wireBadModuleURL(bad));
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

  // The reference server's payloads carry no origin; a signed one always does.
  if (o === undefined ? secret !== undefined : typeof o !== 'string' || !isOrigin(o)) return reject('missing or invalid origin "o"');
  if (k !== 'global' && (typeof r !== 'string' || !(isRealmURL(r) || isPrefixIdentifier(r))))
    return reject('realm "r" must be an absolute http(s) URL or a prefix identifier, ending with "/"');
  if (k === 'module') {
    if (!Array.isArray(m) || m.length === 0) return reject('module message needs a non-empty URL list "m"');
    if (!m.every((u): u is string => typeof u === 'string' && (isHttpURL(u) || isPrefixedURL(u))))
      return reject('module URL list "m" holds an invalid URL (neither http(s) nor prefixed)');
  }
  if (s !== undefined && (typeof s !== 'string' || !SIGNATURE.test(s))) return reject('signature "s" is not 64 hex characters');

  if (secret !== undefined) {
    if (s === undefined) return reject('unsigned payload while a signing secret is configured');
    if (!isSignedBy(signedParts({ k, r, m, o } as Wire), secret, s as string)) return reject('signature mismatch');
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
