import { Logger } from '@nestjs/common';
import { encodeInvalidations, MAX_PAYLOAD_BYTES, type InvalidationTarget } from '../wire/invalidation';
import { syncMarkerAround } from '../wire/sync-marker';
import type { Acknowledged, Membership } from '../consistency/membership';
import {
  FenceBusyError,
  InvalidationBroadcastError,
  InvalidationUnconfirmedError,
  InvalidModuleURLError,
  ModuleCacheShutdownError,
  type ModuleCacheError,
} from '../errors';
import { messages } from '../messages';
import type { ResolvedModuleCacheOptions } from '../config/options';
import type { Recorder } from '../events/recorder';
import type { InvalidatedRow, InvalidationSeed, InvalidationStore } from '../persistence/invalidations';
import { isFenceTimeout, isLockOrderConflict } from '../persistence/connection-failures';
import type { LocalState } from '../local/local-state';
import { parseRealmURL } from '../config/urls';
import { describeError } from '../describe-error';

/** Seeds one group-commit transaction carries at most (a single larger call still goes alone, whole). */
export const MAX_BATCH_SEEDS = 1_000;
/** Module-invalidation transactions one process keeps in flight; later calls join the next one. */
export const MAX_INVALIDATIONS_IN_FLIGHT = 4;
/** Times a transaction is run again after the database broke a lock-order conflict (it did nothing). */
const LOCK_ORDER_RETRIES = 3;

export interface InvalidatorDeps {
  options: ResolvedModuleCacheOptions;
  local: LocalState;
  invalidations: InvalidationStore;
  recorder: Recorder;
  origin: string;
  /** Strong consistency; null in eventual mode. */
  membership: Membership | null;
}

/** One invalidate()/invalidateMany() call waiting for the transaction that carries it. */
interface Caller {
  seeds: InvalidationSeed[];
  resolve: (deleted: { urls: string[]; seq: string }) => void;
  reject: (error: unknown) => void;
}

/**
 * The three invalidation paths. Each clears local state synchronously before its first await
 * and again after the commit (a read racing the transaction must not repopulate memory), and
 * deletes rows, writes the fence log and NOTIFYs peers in one transaction. Module invalidations
 * are group-committed: calls that arrive while MAX_INVALIDATIONS_IN_FLIGHT transactions are
 * running join the next one; a lone call starts at once.
 */
export class Invalidator {
  private readonly logger = new Logger('ModuleCacheInvalidator');
  private readonly queue: Caller[] = [];
  private running = 0;

  constructor(private readonly deps: InvalidatorDeps) {}

  /**
   * Invalidates the module, its URL variants and every transitive consumer (all scopes); returns
   * the URLs invalidated: `[]` for a URL outside every registered realm, as the reference (the Boxel realm server) does.
   */
  invalidate(moduleURL: string): Promise<string[]> {
    return this.invalidateMany([moduleURL], `invalidate(${String(moduleURL)})`);
  }

  /**
   * invalidate() of every URL in one transaction: one fan-out, one delete, one fence-log row,
   * payloads per realm. Every URL is checked before anything happens (one invalid URL rejects the
   * call); URLs outside every registered realm are skipped. Returns the union of the URLs invalidated.
   */
  async invalidateMany(
    moduleURLs: string[],
    what = `invalidateMany(${Array.isArray(moduleURLs) ? moduleURLs.length : '?'} URLs)`,
  ): Promise<string[]> {
    if (!Array.isArray(moduleURLs)) {
      throw new InvalidModuleURLError(
        messages.moduleURLsNotArray(moduleURLs === null ? 'null' : `a ${typeof moduleURLs}`, 'invalidateMany'),
      );
    }
    const started = performance.now();
    const { local } = this.deps;
    const seeds = new Map<string, InvalidationSeed>();
    for (const input of moduleURLs) {
      const url = local.urls.canonical(input);
      const realm = local.realms.find(url);
      if (realm === undefined) {
        this.logger.debug(`${what}: ${url} is not inside any registered realm, nothing to do`);
        continue;
      }
      const alias = local.urls.alias(url);
      const seed = seeds.get(alias) ?? { alias, realm, variants: [] };
      seed.variants.push(...local.urls.variants(url).filter((v) => !seed.variants.includes(v)));
      seeds.set(alias, seed);
    }
    if (seeds.size === 0) return [];
    const aliases = [...seeds.keys()];
    // Synchronously, before any await: no lookup in this process serves or persists them from now on.
    local.forgetModules(aliases);
    let deleted: { urls: string[]; seq: string };
    try {
      deleted = await new Promise((resolve, reject) => {
        this.queue.push({ seeds: [...seeds.values()], resolve, reject });
        this.drain();
      });
    } catch (error) {
      throw this.failure(what, error);
    } finally {
      // Again after commit: a read that raced the transaction must not repopulate memory.
      local.forgetModules(aliases);
    }
    const urls = [...new Set([...[...seeds.values()].flatMap((s) => s.variants), ...deleted.urls])];
    local.forgetModules(new Set(deleted.urls.map((u) => local.urls.alias(u))));
    const strong = await this.confirm(what, deleted.seq, true);
    const realms = new Set([...seeds.values()].map((s) => s.realm));
    this.deps.recorder.record({
      type: 'invalidated',
      kind: 'module',
      ...(realms.size === 1 ? { realm: [...realms][0] } : {}),
      urls,
      durationMs: performance.now() - started,
      ...strong,
    });
    return urls;
  }

  /** Starts transactions while slots are free, each carrying the callers queued so far (bounded). */
  private drain(): void {
    while (this.running < MAX_INVALIDATIONS_IN_FLIGHT && this.queue.length > 0) {
      const batch: Caller[] = [this.queue.shift()!];
      let size = batch[0].seeds.length;
      while (this.queue.length > 0 && size + this.queue[0].seeds.length <= MAX_BATCH_SEEDS) {
        size += this.queue[0].seeds.length;
        batch.push(this.queue.shift()!);
      }
      this.running++;
      void this.commit(batch).finally(() => {
        this.running--;
        this.drain();
      });
    }
  }

  /** One transaction for `batch`; each caller gets the URLs its own seeds reached, or the transaction's error. */
  private async commit(batch: Caller[]): Promise<void> {
    try {
      const { urls, seq, sent } = await this.withLockOrderRetries(() => this.transaction(batch));
      batch.forEach((caller, group) => {
        // Counted once per caller: stats().invalidations counts invalidate()/invalidateMany() calls.
        this.deps.recorder.record({ type: 'notified', payloads: group === 0 ? sent : 0 });
        caller.resolve({ urls: urls.get(group) ?? [], seq });
      });
    } catch (error) {
      for (const caller of batch) caller.reject(error);
    }
  }

  private async transaction(batch: Caller[]): Promise<{ urls: Map<number, string[]>; seq: string; sent: number }> {
    const seeds = batch.flatMap((caller, group) => caller.seeds.map((seed) => ({ ...seed, group })));
    const strong = this.deps.membership !== null;
    if (this.deps.options.signingSecret === undefined) {
      // Unsigned payloads: the database encodes them itself, one statement whatever the fan-out.
      return this.deps.invalidations.invalidateMany({
        seeds,
        encoding: { origin: this.deps.options.wireFormat === 'boxel' ? null : this.deps.origin, budget: MAX_PAYLOAD_BYTES },
        ...(strong ? { syncOrigin: this.deps.origin } : {}),
      });
    }
    const { signingSecret } = this.deps.options;
    let sent = 0;
    const { rows, seq } = await this.deps.invalidations.invalidateFenced({
      seeds,
      onAffected: (affected) => {
        this.deps.local.forgetModules(affected.map((r) => r.alias));
        const payloads = moduleTargets(seeds, affected).flatMap((target) => this.encode(target));
        sent = payloads.length;
        return payloads;
      },
      ...(strong ? { syncMarker: (seq: string) => syncMarkerAround(seq, { origin: this.deps.origin, signingSecret }) } : {}),
    });
    return { urls: new Map([...rows].map(([group, deleted]) => [group, deleted.map((r) => r.url)])), seq, sent };
  }

  private async withLockOrderRetries<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await work();
      } catch (error) {
        if (!isLockOrderConflict(error) || attempt > LOCK_ORDER_RETRIES) throw error;
        this.logger.debug(`invalidation hit a lock-order conflict (${describeError(error)}), running it again`);
      }
    }
  }

  /** Clears the rows of a realm prefix (registered or not; nested realms too), here and in every peer. Returns the rows deleted. */
  async clearRealm(realmURL: string): Promise<number> {
    const started = performance.now();
    const realm = parseRealmURL(realmURL);
    this.deps.local.forgetRealm(realm);
    let cleared: { count: number; seq: string };
    try {
      const payloads = this.encode({ kind: 'realm', realm });
      const { deleted: count, seq } = await this.withLockOrderRetries(() =>
        this.deps.invalidations.clearRealm({ realm, payloads, ...this.unsignedSync() }),
      );
      this.deps.recorder.record({ type: 'notified', payloads: payloads.length });
      cleared = { count, seq };
    } catch (error) {
      throw this.failure(`clearRealm(${realm})`, error);
    } finally {
      this.deps.local.forgetRealm(realm);
    }
    const strong = await this.confirm(`clearRealm(${realm})`, cleared.seq, this.unsignedSync().syncOrigin !== undefined);
    this.deps.recorder.record({ type: 'invalidated', kind: 'realm', realm, urls: [], durationMs: performance.now() - started, ...strong });
    return cleared.count;
  }

  /** Clears everything, here and in every peer. Returns the rows deleted. */
  async clearAll(): Promise<number> {
    const started = performance.now();
    this.deps.local.forgetAll();
    let cleared: { count: number; seq: string };
    try {
      const payloads = this.encode({ kind: 'global' });
      const { deleted: count, seq } = await this.withLockOrderRetries(() =>
        this.deps.invalidations.clearAll({ payloads, ...this.unsignedSync() }),
      );
      this.deps.recorder.record({ type: 'notified', payloads: payloads.length });
      cleared = { count, seq };
    } catch (error) {
      throw this.failure('clearAll()', error);
    } finally {
      this.deps.local.forgetAll();
    }
    const strong = await this.confirm('clearAll()', cleared.seq, this.unsignedSync().syncOrigin !== undefined);
    this.deps.recorder.record({ type: 'invalidated', kind: 'global', urls: [], durationMs: performance.now() - started, ...strong });
    return cleared.count;
  }

  /** Strong consistency without a signing secret: the database builds the sync marker inside the transaction. */
  private unsignedSync(): { syncOrigin?: string } {
    return this.deps.membership && this.deps.options.signingSecret === undefined ? { syncOrigin: this.deps.origin } : {};
  }

  /**
   * Strong consistency: unless the transaction already sent it, sends the sync marker of the
   * committed invalidation `seq` (through the pool, so it commits after the invalidation and
   * reaches every peer after it); then waits until every live peer acknowledged it or its lease
   * ran out. Eventual consistency: nothing to wait for.
   */
  private async confirm(what: string, seq: string, markerSent: boolean): Promise<{ acknowledgements?: Acknowledged }> {
    const { membership } = this.deps;
    if (!membership) return {};
    try {
      if (!markerSent) {
        await this.deps.invalidations.notifySync({
          seq,
          ...syncMarkerAround(seq, { origin: this.deps.origin, signingSecret: this.deps.options.signingSecret }),
        });
      }
      return { acknowledgements: await membership.awaitAcknowledgements(seq, this.deps.local.shutdown) };
    } catch (error) {
      if (error instanceof ModuleCacheShutdownError) {
        this.logger.warn(`${what} committed, but this process is shutting down before every peer acknowledged it: ${error.message}`);
        throw error;
      }
      const message = describeError(error);
      this.logger.error(`${what} committed, but peers could not be confirmed: ${message}`);
      throw new InvalidationUnconfirmedError(messages.invalidationUnconfirmed(what, message), { cause: error });
    }
  }

  private encode(target: InvalidationTarget): string[] {
    return encodeInvalidations(target, {
      origin: this.deps.origin,
      signingSecret: this.deps.options.signingSecret,
      format: this.deps.options.wireFormat,
    });
  }

  /** A busy fence (or a lock-order conflict that kept coming back) is E_FENCE_BUSY; anything else a broadcast failure. */
  private failure(what: string, error: unknown): ModuleCacheError {
    if (isFenceTimeout(error) || isLockOrderConflict(error)) {
      this.deps.recorder.record({ type: 'fence-busy', what: 'invalidation' });
      const message = messages.fenceBusy(what, this.deps.options.fenceWaitMs);
      this.logger.warn(`${message}; local caches were cleared`);
      return new FenceBusyError(message, { cause: error });
    }
    const message = describeError(error);
    this.logger.error(`${what} failed; local caches were cleared but peers were not told: ${message}`);
    return new InvalidationBroadcastError(messages.broadcastFailed(what, message), {
      cause: error,
    });
  }
}

/** The payload targets of a signed transaction: per realm, the seeds' variants and the deleted rows' URLs, each once. */
function moduleTargets(seeds: InvalidationSeed[], rows: InvalidatedRow[]): InvalidationTarget[] {
  const byRealm = new Map<string, Set<string>>();
  const add = (realm: string, url: string) => {
    if (!byRealm.has(realm)) byRealm.set(realm, new Set());
    byRealm.get(realm)!.add(url);
  };
  for (const seed of seeds) for (const url of seed.variants) add(seed.realm, url);
  for (const row of rows) add(row.realm, row.url);
  return [...byRealm].map(([r, urls]) => ({ kind: 'module' as const, realm: r, urls: [...urls] }));
}
