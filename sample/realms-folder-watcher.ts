import path from 'node:path';
import { watch } from 'chokidar';
import { isRealmName } from './realm-layout';
import type { RealmWatcher, RealmWatcherLogger } from './realm-watcher';

export interface RealmFolderEvents {
  /** A realm subfolder exists: reported for each one during the initial scan, then for each one that appears. */
  added(name: string): void;
  removed(name: string): void;
}

/**
 * Watches the top level of `realmsDir` only (chokidar depth 0: one directory, however large the
 * realms), so that every worker can afford to notice realms appear and disappear by itself.
 * Renaming a subfolder is a removal and an addition. `ready` resolves after the initial scan has
 * reported every existing realm.
 */
export function watchRealmsFolder(realmsDir: string, events: RealmFolderEvents, logger?: RealmWatcherLogger): RealmWatcher {
  const root = path.resolve(realmsDir);
  const watcher = watch(root, { depth: 0, ignoreInitial: false });
  const ready = new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  const realmOf = (dir: string) => (path.dirname(dir) === root && isRealmName(path.basename(dir)) ? path.basename(dir) : null);
  const report = (what: keyof RealmFolderEvents, dir: string) => {
    const name = realmOf(dir);
    if (name === null) return; // the root itself, or a folder that is no realm
    try {
      events[what](name);
    } catch (e) {
      logger?.warn(`realms watcher: ${what}(${name}) threw: ${(e as Error)?.message ?? e}`);
    }
  };
  watcher.on('addDir', (dir) => report('added', dir));
  watcher.on('unlinkDir', (dir) => report('removed', dir));
  watcher.on('error', (e) => logger?.warn(`realms watcher on ${root}: ${(e as Error)?.message ?? e}`));
  return { ready, close: () => watcher.close() };
}
