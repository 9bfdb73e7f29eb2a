import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isRealmName, realmFolderFor, realmURLFor, scopeForRealms } from '../../sample/realm-layout';
import { RealmsDefinitionSource } from '../../sample/realms-definition-source';
import { watchRealmsFolder } from '../../sample/realms-folder-watcher';
import type { RealmWatcher } from '../../sample/realm-watcher';
import { waitFor } from '../support/wait';

const REALMS_URL = 'https://cardstack.test/realms/';

describe('the realms folder: one realm per subfolder', () => {
  let realmsDir: string;
  let layout: { realmsDir: string; realmsURL: string };
  beforeEach(() => {
    realmsDir = mkdtempSync(path.join(os.tmpdir(), 'module-cache-realms-'));
    layout = { realmsDir, realmsURL: REALMS_URL };
  });
  afterEach(() => rmSync(realmsDir, { recursive: true, force: true }));

  it('maps subfolders to realm URLs and back, escaping names as the lookup canonicalises them', () => {
    expect(realmURLFor(layout, 'realm')).toBe(`${REALMS_URL}realm/`);
    for (const name of ['a b', 'späť', '100%', 'x#y?z', 'a:b']) {
      const url = realmURLFor(layout, name);
      expect(new URL(url).href, name).toBe(url);
      expect(realmFolderFor(layout, url), name).toBe(path.join(realmsDir, name));
    }
    // Not one subfolder's realm: nested, outside, not a realm name.
    for (const url of [`${REALMS_URL}a/b/`, 'https://elsewhere.test/realms/a/', `${REALMS_URL}.git/`, REALMS_URL, `${REALMS_URL}%zz/`])
      expect(realmFolderFor(layout, url), url).toBeNull();
    expect(['.git', 'node_modules', ''].map(isRealmName)).toEqual([false, false, false]);
  });

  it('scopes a private realm (a .private file) per user, and every other realm as public; the marker is read on each lookup', () => {
    mkdirSync(path.join(realmsDir, 'open'));
    mkdirSync(path.join(realmsDir, 'notes'));
    const scopeFor = scopeForRealms(layout);
    const notes = realmURLFor(layout, 'notes');
    expect(scopeFor(notes, 'alice')).toBe('public');
    writeFileSync(path.join(realmsDir, 'notes', '.private'), '');
    expect([scopeFor(notes, 'alice'), scopeFor(notes, 'bob'), scopeFor(notes, undefined)]).toEqual([
      'user:alice',
      'user:bob',
      'user:anonymous',
    ]);
    expect(scopeFor(realmURLFor(layout, 'open'), 'alice')).toBe('public');
  });

  it("loads a module from its realm's folder, and fails (uncached) rather than answer null once the folder is gone", async () => {
    mkdirSync(path.join(realmsDir, 'one'));
    writeFileSync(path.join(realmsDir, 'one', 'a.ts'), 'export const a = 1;');
    const source = new RealmsDefinitionSource(layout);
    const realmURL = realmURLFor(layout, 'one');
    const load = (file: string) => source.load(`${realmURL}${file}`, { realmURL, scope: 'public', signal: new AbortController().signal });
    expect((await load('a.ts'))?.definitions).toEqual({ a: { kind: 'const', line: 1 } });
    expect(await load('missing.ts')).toBeNull();
    rmSync(path.join(realmsDir, 'one'), { recursive: true });
    await expect(load('a.ts')).rejects.toThrow(/folder of realm .* is gone/);
  });

  describe('watchRealmsFolder', () => {
    let watcher: RealmWatcher | undefined;
    afterEach(() => watcher?.close());

    it('reports the realm subfolders there are, then those that appear and disappear; never files, dot-folders or nested folders', async () => {
      mkdirSync(path.join(realmsDir, 'realm', 'nested'), { recursive: true });
      mkdirSync(path.join(realmsDir, '.git'));
      writeFileSync(path.join(realmsDir, 'README.md'), '');
      const seen: string[] = [];
      watcher = watchRealmsFolder(realmsDir, { added: (name) => seen.push(`+${name}`), removed: (name) => seen.push(`-${name}`) });
      await watcher.ready;
      expect(seen).toEqual(['+realm']);
      mkdirSync(path.join(realmsDir, 'new realm'));
      await waitFor(() => seen.includes('+new realm'), 10_000, 'the new realm');
      rmSync(path.join(realmsDir, 'realm'), { recursive: true });
      await waitFor(() => seen.includes('-realm'), 10_000, 'the removed realm');
      expect(seen).toEqual(['+realm', '+new realm', '-realm']);
    });
  });
});
