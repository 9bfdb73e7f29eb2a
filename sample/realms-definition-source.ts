import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { DefinitionSource, DefinitionSourceContext, LoadedModule, ModuleListingContext } from '../src';
import { FolderDefinitionSource, MODULE_EXTENSIONS } from './folder-definition-source';
import { realmFolderFor, type RealmsLayout } from './realm-layout';
import { moduleURLForFile } from './realm-watcher';

/**
 * The source of every realm under REALMS_DIR: a FolderDefinitionSource rooted at the realm's own
 * folder (so one realm's modules cannot reach into another's), picked by the lookup's realm.
 */
export class RealmsDefinitionSource implements DefinitionSource {
  constructor(private readonly layout: RealmsLayout) {}

  async load(moduleURL: string, { realmURL, signal }: DefinitionSourceContext): Promise<LoadedModule | null> {
    const rootDir = realmFolderFor(this.layout, realmURL);
    if (!rootDir) return null;
    // Cheap to make (no I/O): one per call keeps nothing alive for realms that are gone.
    const loaded = await new FolderDefinitionSource({ rootDir, realmURL }).load(moduleURL, { signal });
    // A realm folder being removed is no "module not found" (which the cache would store): it fails
    // the lookup instead, uncached, until this worker has unmounted the realm.
    if (loaded === null && !existsSync(rootDir)) throw new Error(`the folder of realm ${realmURL} is gone (${rootDir})`);
    return loaded;
  }

  /** For prewarm(): every module file of the realm's folder (dot-entries and node_modules left out, as the watchers do). */
  async listModules(realmURL: string, { signal }: ModuleListingContext): Promise<string[]> {
    const rootDir = realmFolderFor(this.layout, realmURL);
    if (!rootDir) return [];
    const files = await readdir(rootDir, { recursive: true, withFileTypes: true });
    signal.throwIfAborted();
    return files
      .filter((f) => f.isFile() && Object.hasOwn(MODULE_EXTENSIONS, path.extname(f.name)))
      .map((f) => path.join(f.parentPath, f.name))
      .filter(
        (file) =>
          !path
            .relative(rootDir, file)
            .split(path.sep)
            .some((s) => s.startsWith('.') || s === 'node_modules'),
      )
      .map((file) => moduleURLForFile(rootDir, realmURL, file))
      .filter((url): url is string => url !== null)
      .sort();
  }
}
