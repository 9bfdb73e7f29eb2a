import { InvalidModuleURLError, UnknownRealmError } from '../errors';
import { messages } from '../messages';

const MAX_URL_LENGTH = 8192;

/** Absolute http(s) URL with query and hash stripped; throws InvalidModuleURLError otherwise. */
export function canonicalURL(input: unknown): string {
  if (typeof input !== 'string' || input.length === 0) {
    throw new InvalidModuleURLError(messages.moduleURLNotString(describe(input)));
  }
  if (input.length > MAX_URL_LENGTH) {
    throw new InvalidModuleURLError(messages.moduleURLTooLong(input.length, MAX_URL_LENGTH));
  }
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

/** Registered realms; a module belongs to the longest realm prefix that contains it. */
export class RealmRegistry {
  private readonly realms: string[];

  constructor(realms: readonly string[]) {
    this.realms = [...new Set(realms)].sort((a, b) => b.length - a.length);
  }

  get all(): readonly string[] {
    return this.realms;
  }

  has(realm: string): boolean {
    return this.realms.includes(realm);
  }

  find(url: string): string | undefined {
    return this.realms.find((realm) => url.startsWith(realm));
  }

  resolve(url: string): string {
    const realm = this.find(url);
    if (!realm) {
      throw new UnknownRealmError(url, this.realms);
    }
    return realm;
  }

  /** Canonicalises a realm URL given by a caller; throws for unregistered ones. */
  canonicalRealm(input: unknown): string {
    const url = canonicalURL(input);
    const realm = url.endsWith('/') ? url : `${url}/`;
    if (!this.has(realm)) throw new UnknownRealmError(realm, this.realms);
    return realm;
  }
}
