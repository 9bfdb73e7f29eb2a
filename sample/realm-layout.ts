import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { ServiceConfig } from './service-config';

/**
 * How REALMS_DIR maps to realms: its subfolder `x` is the realm `${REALMS_URL}x/`, and a realm is
 * private when its folder holds a file named `.private`. Derived from the config and the folder
 * alone, so every worker (and the primary's banner) agrees without sharing any state.
 */
export type RealmsLayout = Pick<ServiceConfig, 'realmsDir' | 'realmsURL'>;

/** The marker file of a private realm: its cache scope is per user. */
export const PRIVATE_MARKER = '.private';

/** Subfolder names that are realms: not dot-folders (.git) nor node_modules, which the watchers skip too. */
export function isRealmName(name: string): boolean {
  return name !== '' && !name.startsWith('.') && name !== 'node_modules' && !/[/\\\0]/.test(name);
}

/**
 * A file or folder name as a URL path segment, in the form `new URL()` gives it (the form the lookup
 * canonicalises to): only the characters that would change how a URL splits or decodes ('%', '/',
 * '\', '?', '#') are escaped here; the URL parser escapes the rest exactly as it would for a
 * client's request, so `a b`, `ü` and `a@b` produce the keys a request produces.
 */
export function urlSegment(name: string): string {
  return [...name].map((c) => ('%/\\?#'.includes(c) ? encodeURIComponent(c) : c)).join('');
}

/** The realm URL of subfolder `name`. */
export function realmURLFor({ realmsURL }: RealmsLayout, name: string): string {
  // './' keeps a name like 'a:b' from being read as a URL scheme.
  return new URL(`./${urlSegment(name)}/`, realmsURL).href;
}

/** The folder of a realm URL, or null when the URL is no direct subfolder's. */
export function realmFolderFor({ realmsDir, realmsURL }: RealmsLayout, realmURL: string): string | null {
  if (!realmURL.startsWith(realmsURL) || !realmURL.endsWith('/')) return null;
  const segment = realmURL.slice(realmsURL.length, -1);
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    return null;
  }
  return !segment.includes('/') && isRealmName(name) ? path.join(realmsDir, name) : null;
}

/**
 * Asked on every lookup rather than remembered from when the folder appeared: `mkdir x; touch
 * x/.private` may be seen between the two, and every worker must agree. It is one stat of an entry
 * the kernel has cached (microseconds), and synchronous, so a memory hit stays synchronous too.
 */
export function isPrivateRealm(layout: RealmsLayout, realmURL: string): boolean {
  const folder = realmFolderFor(layout, realmURL);
  // A URL that is no realm folder cannot be shown to be public: keep it per user.
  return folder === null || existsSync(path.join(folder, PRIVATE_MARKER));
}

/** The `scopeFor` option: one shared `public` entry in a public realm, one per user in a private one. */
export function scopeForRealms(layout: RealmsLayout): (realmURL: string, user: string | undefined) => string {
  return (realmURL, user) => (isPrivateRealm(layout, realmURL) ? `user:${user ?? 'anonymous'}` : 'public');
}

/** The realm subfolders there are now, for the primary's banner (workers learn theirs from the watcher). */
export function listRealms(layout: RealmsLayout): { name: string; private: boolean }[] {
  return readdirSync(layout.realmsDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && isRealmName(entry.name))
    .map(({ name }) => ({ name, private: existsSync(path.join(layout.realmsDir, name, PRIVATE_MARKER)) }))
    .sort((a, b) => a.name.localeCompare(b.name));
}
