import { Logger } from '@nestjs/common';
import type { Computation } from '../computation/computation';
import type { ResolvedModuleCacheOptions } from '../config/options';
import { parseRealmURL } from '../config/urls';
import { describeError } from '../describe-error';
import { DefinitionSourceError, InvalidModuleURLError, ModuleCacheShutdownError, NoModuleListingError } from '../errors';
import type { PrewarmOutcome } from '../events/events';
import type { Recorder } from '../events/recorder';
import type { LocalState } from '../local/local-state';
import { messages } from '../messages';
import { LOWEST_PRIORITY, type DefinitionSource, type ModuleCacheEntry, type PrewarmSummary } from '../types';
import { lookupScope } from './scopes';

export interface PrewarmDeps {
  options: ResolvedModuleCacheOptions;
  local: LocalState;
  computation: Computation;
  recorder: Recorder;
  source: DefinitionSource;
  /** The service's batch read of cached entries (memory, then the table), in an explicit realm. */
  lookupMany(urls: string[], realmURL: string): Promise<Map<string, ModuleCacheEntry | undefined>>;
}

/**
 * prewarm(): computes and persists a realm's own modules ahead of their first lookup. It reads what
 * is cached in one batch, then computes the rest, `prewarm.concurrency` at a time, at
 * LOWEST_PRIORITY, through the ordinary lookup path (so it shares computations with lookups, here
 * and across processes) except that an error entry is reported and not stored: a failure during
 * warm-up may be transient, and stored it would be served for errorTtlMs. It follows no
 * dependencies: only the listed modules of the realm itself are warmed.
 */
export class Prewarmer {
  private readonly logger = new Logger('ModuleCachePrewarm');

  constructor(private readonly deps: PrewarmDeps) {}

  async prewarm(realmURL: string, moduleURLs?: readonly string[]): Promise<PrewarmSummary> {
    const started = performance.now();
    const realm = parseRealmURL(realmURL);
    if (moduleURLs !== undefined && !Array.isArray(moduleURLs)) {
      throw new InvalidModuleURLError(messages.prewarmURLsNotArray(moduleURLs === null ? 'null' : `a ${typeof moduleURLs}`));
    }
    const listed = moduleURLs ?? (await this.list(realm));
    const { own, skipped, requested } = this.ownModules(realm, listed);
    const summary: PrewarmSummary = {
      realmURL: realm,
      requested,
      warmed: 0,
      alreadyCached: 0,
      notFound: 0,
      errors: [],
      skipped,
      durationMs: 0,
    };
    const total = own.length;
    let completed = 0;
    const done = (url: string, outcome: PrewarmOutcome, error?: string) => {
      completed++;
      if (outcome === 'warmed') summary.warmed++;
      else if (outcome === 'cached') summary.alreadyCached++;
      else if (outcome === 'not-found') summary.notFound++;
      else summary.errors.push({ url, message: error ?? 'error' });
      this.deps.recorder.record({
        type: 'prewarm-progress',
        realm,
        url,
        outcome,
        ...(error !== undefined ? { error } : {}),
        completed,
        total,
      });
    };

    const cached = own.length ? await this.deps.lookupMany(own, realm) : new Map<string, ModuleCacheEntry | undefined>();
    const queue: string[] = [];
    for (const url of own) {
      const entry = cached.get(url);
      if (entry === undefined) queue.push(url);
      else if (entry.error) done(url, 'error', entry.error.message);
      else done(url, 'cached');
    }
    const worker = async () => {
      for (let url = queue.shift(); url !== undefined; url = queue.shift()) {
        const outcome = await this.warm(url, realm);
        done(url, outcome.outcome, outcome.error);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.deps.options.prewarm.concurrency, queue.length) }, worker));

    summary.durationMs = Math.round(performance.now() - started);
    this.deps.recorder.record({ type: 'prewarm-finished', ...summary });
    this.logger.log(
      `prewarm(${realm}): ${summary.warmed} warmed, ${summary.alreadyCached} cached already, ${summary.notFound} not found, ` +
        `${summary.errors.length} error(s) (not stored), ${summary.skipped} skipped, in ${summary.durationMs} ms`,
    );
    return summary;
  }

  /** One module, through the lookup path at the lowest priority, errors not stored. Shutdown stops the whole prewarm. */
  private async warm(url: string, realm: string): Promise<{ outcome: PrewarmOutcome; error?: string }> {
    const { local, computation, options } = this.deps;
    try {
      const ctx = local.context(url, realm);
      const scope = await lookupScope(ctx.realm, {}, options.scopeFor);
      const fenced = await computation.resolve(ctx, scope, performance.now(), { priority: LOWEST_PRIORITY, persistErrors: false });
      if (fenced === undefined) return { outcome: 'not-found' };
      if (fenced.entry.error) return { outcome: 'error', error: fenced.entry.error.message };
      return { outcome: 'warmed' };
    } catch (error) {
      if (error instanceof ModuleCacheShutdownError) throw error;
      // The source threw or timed out, the database failed: reported for this module, the others go on.
      this.logger.warn(`prewarm(${realm}): ${url}: ${describeError(error)}`);
      return { outcome: 'error', error: describeError(error) };
    }
  }

  private async list(realm: string): Promise<string[]> {
    const { source, local } = this.deps;
    if (typeof source.listModules !== 'function') throw new NoModuleListingError(messages.noModuleListing(realm));
    let listed: unknown;
    try {
      listed = await source.listModules(realm, { realmURL: realm, signal: local.shutdown });
    } catch (error) {
      if (error instanceof NoModuleListingError) throw error;
      throw new DefinitionSourceError(messages.badModuleListing(realm, `failed: ${describeError(error)}`), { cause: error });
    }
    if (!Array.isArray(listed) || listed.some((u) => typeof u !== 'string')) {
      throw new DefinitionSourceError(messages.badModuleListing(realm, 'must resolve with an array of module URLs'));
    }
    return listed as string[];
  }

  /**
   * The realm's own modules among `urls`, canonical and de-duplicated; the others (outside the realm,
   * or in a registered realm nested inside it) are skipped. An URL that is not one is bad input.
   */
  private ownModules(realm: string, urls: readonly unknown[]): { own: string[]; skipped: number; requested: number } {
    const { local } = this.deps;
    const distinct = new Set(urls.map((u) => local.urls.canonical(u)));
    const own: string[] = [];
    for (const url of distinct) {
      if (!url.startsWith(realm)) continue;
      const registered = local.realms.find(url);
      if (registered !== undefined && registered.length > realm.length) continue;
      own.push(url);
    }
    return { own, skipped: distinct.size - own.length, requested: distinct.size };
  }
}
