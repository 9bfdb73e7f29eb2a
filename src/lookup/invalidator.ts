import { Logger } from '@nestjs/common';
import { encodeInvalidations, MAX_PAYLOAD_BYTES, type InvalidationTarget } from '../wire/invalidation';
import { syncMarkerAround } from '../wire/sync-marker';
import type { Acknowledged, Membership } from '../consistency/membership';
import { InvalidationBroadcastError, InvalidationUnconfirmedError, ModuleCacheShutdownError, type ModuleCacheError } from '../errors';
import { messages } from '../messages';
import type { ResolvedModuleCacheOptions } from '../config/options';
import type { Recorder } from '../events/recorder';
import { urlHash } from '../persistence/entries';
import type { InvalidatedRow, InvalidationStore } from '../persistence/invalidations';
import type { LocalState } from '../local/local-state';
import { parseRealmURL } from '../config/urls';
import { describeError } from '../describe-error';

/** One-statement invalidation attempts (the first assumes no consumers) before one explicit transaction. */
const OPTIMISTIC_INVALIDATION_ATTEMPTS = 4;

export interface InvalidatorDeps {
  options: ResolvedModuleCacheOptions;
  local: LocalState;
  invalidations: InvalidationStore;
  recorder: Recorder;
  origin: string;
  /** Strong consistency; null in eventual mode. */
  membership: Membership | null;
}

/**
 * The three invalidation paths. Each clears local state synchronously before its first await
 * and again after the commit (a read racing the transaction must not repopulate memory), and
 * deletes rows, writes the fence log and NOTIFYs peers in one transaction.
 */
export class Invalidator {
  private readonly logger = new Logger('ModuleCacheInvalidator');

  constructor(private readonly deps: InvalidatorDeps) {}

  /**
   * Invalidates the module, its URL variants and every transitive consumer (all scopes); returns
   * the URLs invalidated: `[]` for a URL outside every registered realm, as the seed does.
   */
  async invalidate(moduleURL: string): Promise<string[]> {
    const started = performance.now();
    const url = this.deps.local.urls.canonical(moduleURL);
    const realm = this.deps.local.realms.find(url);
    if (realm === undefined) {
      this.logger.debug(`invalidate(${url}): not inside any registered realm, nothing to do`);
      return [];
    }
    const alias = this.deps.local.urls.alias(url);
    const variants = this.deps.local.urls.variants(url);
    this.deps.local.forgetModules([alias]);
    let deleted: { urls: string[]; aliases: string[] } = { urls: [], aliases: [] };
    let sent = 0;
    let seq: string | undefined;
    try {
      if (this.deps.options.signingSecret === undefined) {
        // Unsigned payloads: the database encodes them itself, one statement whatever the fan-out.
        const result = await this.deps.invalidations.invalidateEncoded({
          target: { alias, realm, variants },
          encoding: { origin: this.deps.options.wireFormat === 'seed' ? null : this.deps.origin, budget: MAX_PAYLOAD_BYTES },
        });
        ({ seq, sent } = result);
        const urls = [...new Set(result.urls)];
        deleted = { urls, aliases: [...new Set(urls.map((u) => this.deps.local.urls.alias(u)))] };
      } else {
        const result = await this.invalidateSigned(alias, realm, variants);
        ({ seq, sent } = result);
        deleted = { urls: result.rows.map((r) => r.url), aliases: result.rows.map((r) => r.alias) };
      }
    } catch (error) {
      throw this.broadcastFailure(`invalidate(${url})`, error);
    } finally {
      // Again after commit: a read that raced the transaction must not repopulate memory.
      this.deps.local.forgetModules([alias, ...deleted.aliases]);
    }
    this.deps.recorder.record({ type: 'notified', payloads: sent });
    const urls = [...new Set([...variants, ...deleted.urls])];
    const strong = await this.confirm(`invalidate(${url})`, seq);
    this.deps.recorder.record({ type: 'invalidated', kind: 'module', realm, urls, durationMs: performance.now() - started, ...strong });
    return urls;
  }

  /**
   * Signed payloads are encoded here: first as if nothing depended on the module (one round trip
   * for a module without consumers); the database hands back the fan-out when it reaches further.
   */
  private async invalidateSigned(
    alias: string,
    realm: string,
    variants: string[],
  ): Promise<{ rows: InvalidatedRow[]; seq: string; sent: number }> {
    let known = [urlHash(alias)];
    let payloads = this.encodeModules(realm, variants, []);
    for (let attempt = 1; ; attempt++) {
      if (attempt > OPTIMISTIC_INVALIDATION_ATTEMPTS) {
        // The graph kept gaining consumers between our statements: do it in one transaction.
        const { rows, seq } = await this.deps.invalidations.invalidateModules({
          aliases: [alias],
          onAffected: (affected) => {
            this.deps.local.forgetModules(affected.map((r) => r.alias));
            payloads = this.encodeModules(realm, variants, affected);
            return payloads;
          },
        });
        return { rows, seq, sent: payloads.length };
      }
      const result = await this.deps.invalidations.invalidateAndNotify({ aliases: [alias], knownAliasHashes: known, payloads });
      if (result.done) return { rows: result.rows, seq: result.seq!, sent: payloads.length };
      this.deps.local.forgetModules(result.rows.map((r) => r.alias));
      known = [urlHash(alias), ...result.rows.map((r) => r.alias_hash)];
      payloads = this.encodeModules(realm, variants, result.rows);
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
      const { deleted: count, seq } = await this.deps.invalidations.clearRealm({ realm, payloads });
      this.deps.recorder.record({ type: 'notified', payloads: payloads.length });
      cleared = { count, seq };
    } catch (error) {
      throw this.broadcastFailure(`clearRealm(${realm})`, error);
    } finally {
      this.deps.local.forgetRealm(realm);
    }
    const strong = await this.confirm(`clearRealm(${realm})`, cleared.seq);
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
      const { deleted: count, seq } = await this.deps.invalidations.clearAll({ payloads });
      this.deps.recorder.record({ type: 'notified', payloads: payloads.length });
      cleared = { count, seq };
    } catch (error) {
      throw this.broadcastFailure('clearAll()', error);
    } finally {
      this.deps.local.forgetAll();
    }
    const strong = await this.confirm('clearAll()', cleared.seq);
    this.deps.recorder.record({ type: 'invalidated', kind: 'global', urls: [], durationMs: performance.now() - started, ...strong });
    return cleared.count;
  }

  /**
   * Strong consistency: sends the sync marker of the committed invalidation `seq` (through the
   * pool, so it commits after the invalidation and reaches every peer after it) and waits until
   * every live peer acknowledged it or its lease ran out. Eventual consistency: nothing to wait for.
   */
  private async confirm(what: string, seq: string | undefined): Promise<{ acknowledgements?: Acknowledged }> {
    const { membership } = this.deps;
    if (!membership || seq === undefined) return {};
    try {
      await this.deps.invalidations.notifySync({
        seq,
        ...syncMarkerAround(seq, { origin: this.deps.origin, signingSecret: this.deps.options.signingSecret }),
      });
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

  private encodeModules(realm: string, variants: string[], rows: InvalidatedRow[]): string[] {
    return moduleTargets(realm, variants, rows).flatMap((target) => this.encode(target));
  }

  private broadcastFailure(what: string, error: unknown): ModuleCacheError {
    const message = describeError(error);
    this.logger.error(`${what} failed; local caches were cleared but peers were not told: ${message}`);
    return new InvalidationBroadcastError(messages.broadcastFailed(what, message), {
      cause: error,
    });
  }
}

function moduleTargets(realm: string, variants: string[], rows: InvalidatedRow[]): InvalidationTarget[] {
  const byRealm = new Map<string, Set<string>>([[realm, new Set(variants)]]);
  for (const row of rows) {
    if (!byRealm.has(row.realm)) byRealm.set(row.realm, new Set());
    byRealm.get(row.realm)!.add(row.url);
  }
  return [...byRealm].map(([r, urls]) => ({ kind: 'module' as const, realm: r, urls: [...urls] }));
}
