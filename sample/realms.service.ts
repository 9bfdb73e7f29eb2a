import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { CachingDefinitionLookup } from '../src';
import { isPrivateRealm, realmURLFor } from './realm-layout';
import type { RealmWatcher } from './realm-watcher';
import { watchRealmsFolder } from './realms-folder-watcher';
import type { ServiceConfig } from './service-config';
import { SERVICE_CONFIG } from './service.tokens';

export interface MountedRealm {
  name: string;
  url: string;
  private: boolean;
}

/**
 * Mounts every subfolder of REALMS_DIR as a realm of this worker (registerRealm) and unmounts the
 * ones that go away (unregisterRealm). Every worker watches for itself: registration is per
 * process. Only the watcher worker (WATCHER=1) also clears a removed realm's rows, once for all:
 * the clear reaches the others over NOTIFY; and it prewarms each public realm it mounts.
 */
@Injectable()
export class RealmsService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Realms');
  private readonly mounted = new Map<string, string>(); // name → realm URL
  private watcher: RealmWatcher | undefined;

  constructor(
    private readonly lookup: CachingDefinitionLookup,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {}

  /** Runs before the worker listens: it serves no request before its realms are registered. */
  async onApplicationBootstrap(): Promise<void> {
    this.watcher = watchRealmsFolder(
      this.config.realmsDir,
      { added: (name) => this.mount(name), removed: (name) => this.unmount(name) },
      this.logger,
    );
    await this.watcher.ready;
    this.logger.log(`${this.mounted.size} realm(s) under ${this.config.realmsURL}: ${[...this.mounted.keys()].join(', ') || 'none yet'}`);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.watcher?.close();
  }

  /** This worker's realms, with whether each is private now. */
  list(): MountedRealm[] {
    return [...this.mounted].map(([name, url]) => ({ name, url, private: isPrivateRealm(this.config, url) }));
  }

  private mount(name: string): void {
    const url = realmURLFor(this.config, name);
    this.lookup.registerRealm(url);
    this.mounted.set(name, url);
    // Once for all workers (the rows are shared), in the background: the worker serves meanwhile.
    // A private realm caches per user: there is no one entry to warm.
    if (process.env.WATCHER === '1' && !isPrivateRealm(this.config, url)) void this.prewarm(url);
  }

  private async prewarm(url: string): Promise<void> {
    try {
      const summary = await this.lookup.prewarm(url);
      this.logger.log(`realm ${url} mounted: prewarmed ${JSON.stringify(summary)}`);
    } catch (error) {
      // Nothing is lost: every module is still computed on its first lookup.
      this.logger.warn(`realm ${url} mounted: prewarm stopped: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private unmount(name: string): void {
    const url = this.mounted.get(name);
    if (!url) return;
    this.mounted.delete(name);
    this.lookup.unregisterRealm(url);
    if (process.env.WATCHER === '1') void this.clear(url);
  }

  private async clear(url: string): Promise<void> {
    try {
      const deleted = await this.lookup.clearRealm(url);
      this.logger.log(`realm ${url} removed: ${deleted} row(s) cleared, here and (over NOTIFY) in every worker`);
    } catch (error) {
      // Its rows stay, unread while no worker mounts the realm; `POST /realms/clear` drops them.
      this.logger.error(`realm ${url} removed: clearing its rows failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
