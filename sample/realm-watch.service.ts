import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { CachingDefinitionLookup } from '../src';
import { watchRealmFolder, type RealmWatcher } from './realm-watcher';
import type { ServiceConfig } from './service-config';
import { SERVICE_CONFIG } from './service.tokens';

/**
 * Turns file changes in every realm folder into invalidations: one recursive watch of REALMS_DIR,
 * whose file URLs are the realms' module URLs (see realm-layout.ts). Only the worker started with
 * WATCHER=1 watches: its invalidation reaches every other worker over NOTIFY, and N watchers
 * would only send N identical invalidations. (Realms appearing and disappearing are every
 * worker's own business: see realms.service.ts.)
 */
@Injectable()
export class RealmWatchService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('RealmWatch');
  private watcher: RealmWatcher | undefined;

  constructor(
    private readonly lookup: CachingDefinitionLookup,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (process.env.WATCHER !== '1') return;
    const { realmsDir, realmsURL } = this.config;
    this.watcher = watchRealmFolder(realmsDir, realmsURL, (url) => void this.invalidate(url), this.logger);
    // Ready means the initial scan is done: from here on, no edit goes unnoticed.
    await this.watcher.ready;
    this.logger.log(`watching ${realmsDir} (every realm's files) as ${realmsURL}`);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.watcher?.close();
  }

  private async invalidate(url: string): Promise<void> {
    try {
      const urls = await this.lookup.invalidate(url);
      this.logger.log(`changed ${url}: invalidated ${urls.length} URL(s) here and, over NOTIFY, in every worker`);
    } catch (error) {
      // The lookup already bumped local state; peers may serve stale data until the next change.
      this.logger.error(`changed ${url}: invalidation failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
