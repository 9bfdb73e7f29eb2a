import path from 'node:path';
import { watch } from 'chokidar';
import { MODULE_EXTENSIONS } from './folder-definition-source';
import { urlSegment } from './realm-layout';

/** What the watcher logs through; Nest's `Logger` fits. */
export interface RealmWatcherLogger {
  warn(message: string): void;
}

export interface RealmWatcher {
  /** Resolves once the initial scan is done: changes made before that may go unreported. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

/**
 * Editors save in bursts (truncate + write, or write temp + rename): one call per path per burst
 * is what an invalidation wants, and 50 ms is well below what a person notices.
 */
const DEBOUNCE_MS = 50;

/** Calls `onChange(moduleURL)` when a module file under `rootDir` is added, changed or deleted. */
export function watchRealmFolder(
  rootDir: string,
  realmURL: string,
  onChange: (moduleURL: string) => void,
  logger?: RealmWatcherLogger,
): RealmWatcher {
  const root = path.resolve(rootDir);
  const pending = new Map<string, NodeJS.Timeout>();
  let closed = false;
  const watcher = watch(root, {
    ignoreInitial: true,
    // Dot-folders (.git) and node_modules are not realm modules and can be huge to watch.
    ignored: (p) =>
      path
        .relative(root, p)
        .split(path.sep)
        .some((s) => s === 'node_modules' || s.startsWith('.')),
  });
  const ready = new Promise<void>((resolve) => watcher.once('ready', () => resolve()));

  watcher.on('all', (event, file) => {
    if ((event !== 'add' && event !== 'change' && event !== 'unlink') || !(path.extname(file) in MODULE_EXTENSIONS)) return;
    clearTimeout(pending.get(file));
    pending.set(
      file,
      setTimeout(() => {
        pending.delete(file);
        const url = moduleURLForFile(root, realmURL, file);
        if (closed || !url) return;
        try {
          onChange(url);
        } catch (e) {
          // A failing consumer must not take the watcher (or the process) down with it.
          logger?.warn(`realm watcher: onChange(${url}) threw: ${(e as Error)?.message ?? e}`);
        }
      }, DEBOUNCE_MS),
    );
  });
  watcher.on('error', (e) => logger?.warn(`realm watcher on ${root}: ${(e as Error)?.message ?? e}`));

  return {
    ready,
    async close() {
      closed = true;
      pending.forEach((timer) => clearTimeout(timer));
      pending.clear();
      await watcher.close();
    },
  };
}

/**
 * The module URL of a file under `rootDir`, in the form `new URL()` gives it (which is the form the
 * lookup canonicalises to; see urlSegment), so `a b.ts`, `ü.ts` and `a@b.ts` produce the keys a
 * request produces.
 */
export function moduleURLForFile(rootDir: string, realmURL: string, file: string): string | null {
  const rel = path.relative(path.resolve(rootDir), path.resolve(file));
  if (rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return null;
  const encoded = rel.split(path.sep).map(urlSegment).join('/');
  // './' keeps a first segment like 'a:b.ts' from being read as a URL scheme.
  return new URL(`./${encoded}`, realmURL).href;
}
