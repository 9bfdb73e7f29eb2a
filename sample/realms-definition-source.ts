import { existsSync } from 'node:fs';
import type { DefinitionSource, DefinitionSourceContext, LoadedModule } from '../src';
import { FolderDefinitionSource } from './folder-definition-source';
import { realmFolderFor, type RealmsLayout } from './realm-layout';

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
}
