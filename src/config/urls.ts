import { InvalidModuleURLError, InvalidRealmURLError, UnknownRealmError } from '../errors';
import { messages } from '../messages';

/**
 * The URL rules of the cache, in one place: module URLs (canonical form, aliases, candidates,
 * variants, dependencies), prefix identifiers, and realms. `parseRealmURL` is the only realm rule:
 * the `realms` and `prefixes` options, registerRealm()/unregisterRealm()/clearRealm() and the wire
 * parser all use it, so that what one of them accepts the others accept too.
 */

const MAX_URL_LENGTH = 8192;
/** A lone UTF-16 surrogate (with the `u` flag, a well-formed pair is one code point and does not match). */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Why `text` cannot be stored exactly, or undefined when it can. Postgres text holds no NUL, and
 * the driver encodes a lone surrogate as U+FFFD: two different strings would then share one row
 * (a scope '\uD800' and a scope '\uFFFD'), so both are refused, never substituted.
 */
export function textProblem(text: string): string | undefined {
  if (text.includes('\u0000')) return 'must not contain NUL characters';
  if (LONE_SURROGATE.test(text)) return 'must be well-formed UTF-16 (it holds an unpaired surrogate)';
  return undefined;
}

/** Absolute http(s) URL with query and hash stripped (`x.ts?v=1` is the module `x.ts`); throws InvalidModuleURLError otherwise. */
export function canonicalURL(input: unknown): string {
  if (typeof input !== 'string' || input.length === 0) {
    throw new InvalidModuleURLError(messages.moduleURLNotString(describe(input)));
  }
  if (input.length > MAX_URL_LENGTH) {
    throw new InvalidModuleURLError(messages.moduleURLTooLong(input.length, MAX_URL_LENGTH));
  }
  // The URL parser would turn a lone surrogate into U+FFFD: refused, so what is stored is what was asked for.
  const problem = textProblem(input);
  if (problem) throw new InvalidModuleURLError(messages.badModuleURLText(problem, input));
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new InvalidModuleURLError(messages.notAbsoluteURL(input));
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidModuleURLError(messages.notHttpURL(url.protocol, input));
  }
  url.search = '';
  url.hash = '';
  return url.href;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return 'an empty string';
  return v === null ? 'null' : typeof v;
}

/**
 * A realm, in canonical form (the URL parser's: scheme and host lower-cased, default port dropped,
 * path percent-encoded, dot segments resolved): an absolute http(s) URL written with a trailing
 * "/", without query or hash, in text that can be stored exactly. Throws InvalidRealmURLError
 * otherwise. A realm is a prefix of canonical module URLs, which never hold a query or hash, so a
 * realm with one could match nothing: refused rather than stripped. Callers may spell a realm
 * loosely (`HTTPS://Host/r/`); untrusted payloads must already be canonical (`parseRealmURL(r) === r`).
 */
export function parseRealmURL(input: unknown): string {
  if (typeof input !== 'string' || textProblem(input) !== undefined || !input.endsWith('/')) {
    throw new InvalidRealmURLError(messages.badRealmURL(input));
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new InvalidRealmURLError(messages.badRealmURL(input));
  }
  // An empty `?` or `#` leaves search and hash empty but stays in href: only href tells.
  const queryOrHash = url.href.includes('?') || url.href.includes('#');
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || queryOrHash || !url.pathname.endsWith('/')) {
    throw new InvalidRealmURLError(messages.badRealmURL(input));
  }
  return url.href;
}

/** Characters the URL parser strips silently, and that no identifier on the wire may hold. */
const CONTROL = /[\u0000-\u001f\u007f]/;
const PREFIX_IDENTIFIER = /^[^\s/][^\s]*\/$/;
const URL_SCHEME = /^[a-z][a-z0-9+.-]*:/i;

/**
 * A prefix identifier (`@scope/name/`): the keys of the `prefixes` option, and the realm the
 * reference's servers put on the wire for a prefix-mounted realm. Not a URL (no scheme), no
 * whitespace or control characters, ending with "/".
 */
export function isPrefixIdentifier(input: unknown): input is string {
  return typeof input === 'string' && PREFIX_IDENTIFIER.test(input) && !URL_SCHEME.test(input) && !CONTROL.test(input);
}

/** A module named through a prefix identifier (`@scope/name/x.gts`): a prefix identifier followed by a path. */
export function isPrefixedURL(input: unknown): input is string {
  if (typeof input !== 'string') return false;
  const slash = input.lastIndexOf('/');
  return slash > 0 && isPrefixIdentifier(input.slice(0, slash + 1)) && !/\s/.test(input) && !CONTROL.test(input);
}

/** The extension of the URL's path among `extensions`, if any. */
export function executableExtension(url: string, extensions: readonly string[]): string | undefined {
  const path = new URL(url).pathname;
  return extensions.find((ext) => path.endsWith(ext) && path.length > ext.length && !path.endsWith(`/${ext}`));
}

/** `foo.gts`, `foo.ts` and `foo` share the alias `foo`. */
export function aliasOf(url: string, extensions: readonly string[]): string {
  const ext = executableExtension(url, extensions);
  return ext ? url.slice(0, -ext.length) : url;
}

/** URLs to try, in order: an URL with an extension is its own candidate; an extensionless one tries each extension, then itself. */
export function candidateURLs(url: string, extensions: readonly string[]): string[] {
  if (executableExtension(url, extensions)) return [url];
  return [...extensions.map((ext) => url + ext), url];
}

/** Every spelling a cached row of this module may have been stored under. */
export function urlVariants(url: string, extensions: readonly string[]): string[] {
  const alias = aliasOf(url, extensions);
  return [...new Set([url, alias, ...extensions.map((ext) => alias + ext)])];
}

/** Resolves a dependency specifier against its module, canonicalised and alias-normalised; undefined if unusable. */
export function normaliseDependency(dep: unknown, moduleURL: string, extensions: readonly string[]): string | undefined {
  if (typeof dep !== 'string' || dep.length === 0) return undefined;
  try {
    return aliasOf(canonicalURL(new URL(dep, moduleURL).href), extensions);
  } catch {
    return undefined;
  }
}

/**
 * The URL rules of one cache: canonical forms, aliases by executable extension, and prefix
 * identifiers (`@scope/name/…`) resolved to URLs, for lookups, invalidations and dependencies.
 */
export class UrlResolver {
  private readonly prefixes: Array<[string, string]>;

  constructor(
    readonly extensions: readonly string[],
    prefixes: Readonly<Record<string, string>> = {},
  ) {
    // Longest prefix first, so that `@a/b/` wins over `@a/`.
    this.prefixes = Object.entries(prefixes).sort(([a], [b]) => b.length - a.length);
  }

  /** An absolute http(s) URL (a prefix identifier resolved), query and hash stripped. */
  canonical(input: unknown): string {
    return canonicalURL(this.unprefixed(input));
  }

  alias(url: string): string {
    return aliasOf(url, this.extensions);
  }

  candidates(url: string): string[] {
    return candidateURLs(url, this.extensions);
  }

  variants(url: string): string[] {
    return urlVariants(url, this.extensions);
  }

  /** A dependency specifier resolved against its module (or a prefix), canonical and alias-normalised; undefined if unusable. */
  dependency(dep: unknown, moduleURL: string): string | undefined {
    return normaliseDependency(this.unprefixed(dep), moduleURL, this.extensions);
  }

  /** The same, keeping the extension it was written with (the cheapest candidate to look it up by); undefined if unusable. */
  dependencyURL(dep: unknown, moduleURL: string): string | undefined {
    const spec = this.unprefixed(dep);
    if (typeof spec !== 'string' || spec.length === 0) return undefined;
    try {
      return canonicalURL(new URL(spec, moduleURL).href);
    } catch {
      return undefined;
    }
  }

  /** `input` with its prefix identifier replaced by the URL it maps to, or undefined when no configured prefix matches. */
  resolvePrefix(input: string): string | undefined {
    const match = this.prefixes.find(([prefix]) => input.startsWith(prefix));
    return match ? match[1] + input.slice(match[0].length) : undefined;
  }

  private unprefixed<T>(input: T): T | string {
    if (typeof input !== 'string') return input;
    const match = this.prefixes.find(([prefix]) => input.startsWith(prefix));
    return match ? match[1] + input.slice(match[0].length) : input;
  }
}

/**
 * How many realms a process keeps as used explicitly (`LookupOptions.realmURL`) without having
 * registered them; past it, the least recently used one is forgotten (and its memory entries with it).
 */
export const MAX_EXPLICIT_REALMS = 1_000;

/**
 * Registered realms (they may come and go at runtime); a module belongs to the longest realm prefix
 * that contains it. Beside them, the realms this process used explicitly (`LookupOptions.realmURL`)
 * without registering them: lookups outside every registered realm still fail, but invalidations
 * of a used realm are applied here like a registered one's.
 */
export class RealmRegistry {
  private realms: string[] = [];
  /** Explicitly used realms that are not registered, least recently used first. */
  private readonly used = new Map<string, true>();
  private knownRealms: string[] | undefined;

  /** `realms` in canonical form (parseRealmURL's). */
  constructor(realms: readonly string[]) {
    realms.forEach((realm) => this.register(realm));
  }

  get all(): readonly string[] {
    return this.realms;
  }

  /** Registered and explicitly used realms, longest first. */
  get known(): readonly string[] {
    this.knownRealms ??= [...this.realms, ...this.used.keys()].sort((a, b) => b.length - a.length);
    return this.knownRealms;
  }

  /** False if it was registered already. */
  register(realm: string): boolean {
    if (this.realms.includes(realm)) return false;
    this.realms = [...this.realms, realm].sort((a, b) => b.length - a.length);
    this.used.delete(realm);
    this.knownRealms = undefined;
    return true;
  }

  /** False if it was not registered. */
  unregister(realm: string): boolean {
    if (!this.realms.includes(realm)) return false;
    this.realms = this.realms.filter((r) => r !== realm);
    this.used.delete(realm);
    this.knownRealms = undefined;
    return true;
  }

  /**
   * Notes a realm used explicitly (a registered one needs no note). Returns the realm forgotten to
   * stay within MAX_EXPLICIT_REALMS, if any: its local state must be forgotten too.
   */
  use(realm: string): string | undefined {
    if (this.realms.includes(realm)) return undefined;
    if (this.used.delete(realm)) {
      this.used.set(realm, true);
      return undefined;
    }
    this.used.set(realm, true);
    this.knownRealms = undefined;
    if (this.used.size <= MAX_EXPLICIT_REALMS) return undefined;
    const [oldest] = this.used.keys();
    this.used.delete(oldest);
    return oldest;
  }

  /** The longest registered or explicitly used realm that contains `url`. */
  findKnown(url: string): string | undefined {
    return this.known.find((realm) => url.startsWith(realm));
  }

  has(realm: string): boolean {
    return this.realms.includes(realm);
  }

  find(url: string): string | undefined {
    return this.realms.find((realm) => url.startsWith(realm));
  }

  /** The realm of `url`; throws UnknownRealmError when no registered realm contains it. */
  realmOf(url: string): string {
    const realm = this.find(url);
    if (!realm) throw new UnknownRealmError(url, this.realms);
    return realm;
  }

  /** @deprecated temporary: callers move to realmOf ("resolved" means defaulted options only). */
  resolve(url: string): string {
    return this.realmOf(url);
  }
}
