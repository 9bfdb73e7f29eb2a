import { Logger } from '@nestjs/common';
import { PopulateCoordinator } from '../coordination/populate-coordinator';
import { CoalesceTimeoutError, ComputationDiscardedError, DefinitionSourceError } from '../errors';
import { messages } from '../messages';
import type { ResolvedModuleCacheOptions } from '../module-cache.options';
import type { ModuleCacheEvent, ModuleCacheStats } from '../observability/events';
import { toEntry, type ModuleCacheRepository, type StoredRow } from '../persistence/module-cache.repository';
import type { DefinitionSource, ModuleCacheEntry, ModuleError } from '../types';
import type { GenerationSnapshot, Generations } from './generations';
import type { Flight } from './in-flight';
import { assembleError, callSource } from './source-call';
import { aliasOf, normaliseDependency, type RealmRegistry } from './urls';

export interface LookupContext {
  url: string;
  realm: string;
  scope: string;
  alias: string;
  candidates: string[];
  /** The caller's spelling, for batch results. */
  input?: string;
}

export const DEPENDENCY_CYCLE = Symbol('dependency-cycle');

type EntryFlight = Flight<ModuleCacheEntry | undefined>;
type Outcome = { done: true; entry: ModuleCacheEntry | undefined } | { done: false; reason: DiscardReason };
type DiscardReason = Extract<ModuleCacheEvent, { type: 'discarded' }>['reason'];

export interface ComputationDeps {
  options: ResolvedModuleCacheOptions;
  source: DefinitionSource;
  repository: ModuleCacheRepository;
  generations: Generations;
  realms: RealmRegistry;
  shutdown: AbortSignal;
  stats: ModuleCacheStats;
  emit(event: ModuleCacheEvent): void;
  lookupDependency(url: string, scope: string, waiter: EntryFlight): Promise<ModuleCacheEntry | undefined | typeof DEPENDENCY_CYCLE>;
  remember(urls: string[], entry: ModuleCacheEntry, alias: string): void;
  /** Counts a table hit and emits its event (the lookup service's, shared with lookupCached/lookupMany). */
  tableHit(ctx: LookupContext, started: number): void;
  coordinator: PopulateCoordinator | null;
}

type Coordination =
  { kind: 'row'; row: StoredRow; woken: boolean } | { kind: 'claimed'; key: string; watermark: string } | { kind: 'alone' };

/**
 * One flight's work: read the table (with the fence watermark), else compute from the source,
 * attach dependency errors, and persist through the database fence; a discarded attempt is
 * retried with a new snapshot, at most `maxRetries` times.
 */
export class ComputationRunner {
  private readonly logger = new Logger('CachingDefinitionLookup');

  constructor(private readonly d: ComputationDeps) {}

  /** `coalesce: false` for dependency lookups: waiting on a peer from inside a computation could deadlock across processes. */
  start(key: string, ctx: LookupContext, started: number, coalesce = true): EntryFlight {
    const flight: EntryFlight = {
      key,
      realm: ctx.realm,
      url: ctx.url,
      alias: ctx.alias,
      scope: ctx.scope,
      promise: Promise.resolve(undefined),
      waitingOn: new Set(),
    };
    // Taken before the first await: anything that invalidates from here on is seen.
    const snapshot = this.d.generations.snapshot(ctx.realm, ctx.alias);
    flight.promise = this.run(flight, ctx, snapshot, started, coalesce);
    return flight;
  }

  private async run(
    flight: EntryFlight,
    ctx: LookupContext,
    first: GenerationSnapshot,
    started: number,
    coalesce: boolean,
  ): Promise<ModuleCacheEntry | undefined> {
    let snapshot = first;
    for (let attempt = 1; ; attempt++) {
      let outcome: Outcome;
      try {
        outcome = await this.attempt(flight, ctx, snapshot, attempt, started, coalesce);
      } finally {
        this.d.generations.release(snapshot);
      }
      if (outcome.done) return outcome.entry;
      this.d.stats.discards++;
      this.d.emit({ type: 'discarded', reason: outcome.reason, attempt, url: ctx.url, realm: ctx.realm, scope: ctx.scope });
      if (attempt > this.d.options.maxRetries) {
        const error = new ComputationDiscardedError(
          `${ctx.url} was invalidated during each of ${attempt} computations; giving up (maxRetries = ${this.d.options.maxRetries})`,
        );
        this.logger.warn(error.message);
        throw error;
      }
      this.logger.debug(`${ctx.url} (${ctx.scope}): computation discarded (${outcome.reason}), retrying`);
      this.d.stats.retries++;
      snapshot = this.d.generations.snapshot(ctx.realm, ctx.alias);
    }
  }

  private async attempt(
    flight: EntryFlight,
    ctx: LookupContext,
    snapshot: GenerationSnapshot,
    attempt: number,
    started: number,
    coalesce: boolean,
  ): Promise<Outcome> {
    const { repository, options, stats } = this.d;
    const row = await repository.read(ctx.candidates, ctx.scope, options.errorTtlMs);
    if (row) return this.serveRow(row, ctx, snapshot, started);
    if (attempt === 1) {
      stats.misses++;
      this.d.emit({ type: 'miss', url: ctx.url, realm: ctx.realm, scope: ctx.scope, durationMs: performance.now() - started });
    }
    const coordination: Coordination = coalesce && this.d.coordinator ? await this.coordinate(flight, ctx) : { kind: 'alone' };
    if (coordination.kind === 'row') {
      stats.coalescedWaits++;
      this.d.emit({
        type: 'coalesced',
        url: ctx.url,
        realm: ctx.realm,
        scope: ctx.scope,
        woken: coordination.woken,
        durationMs: performance.now() - started,
      });
      return this.serveRow(coordination.row, ctx, snapshot, started, false);
    }
    const watermark = coordination.kind === 'claimed' ? coordination.watermark : await repository.watermark();
    try {
      return await this.compute(flight, ctx, snapshot, attempt, watermark);
    } finally {
      if (coordination.kind === 'claimed') void this.d.coordinator!.release(coordination.key);
    }
  }

  private serveRow(row: StoredRow, ctx: LookupContext, snapshot: GenerationSnapshot, started: number, countHit = true): Outcome {
    // The row may belong to an invalidation that just committed: read again rather than serve it.
    if (!this.d.generations.isCurrent(snapshot)) return { done: false, reason: 'invalidated-locally' };
    const entry = toEntry(row);
    if (countHit) this.d.tableHit(ctx, started);
    this.d.remember([ctx.url], entry, ctx.alias);
    return { done: true, entry };
  }

  /**
   * Claims the key across processes, or waits to be woken by the claimant and reads its
   * result. The wake-up subscription exists before every check, so none is missed; a claimant
   * that dies releases its claim with its connection and the next check takes over.
   */
  private async coordinate(flight: EntryFlight, ctx: LookupContext): Promise<Coordination> {
    const coordinator = this.d.coordinator!;
    const { repository, options } = this.d;
    const key = PopulateCoordinator.keyOf(flight.key);
    const deadline = Date.now() + options.coalesceWaitTimeoutMs;
    for (let round = 0; ; round++) {
      const wake = coordinator.subscribe(key);
      try {
        const claim = await coordinator.tryClaim(key);
        if (claim === 'unavailable') return { kind: 'alone' };
        if (claim) {
          // A peer may have finished between our read and our claim.
          const again = await repository.read(ctx.candidates, ctx.scope, options.errorTtlMs);
          if (again) {
            void coordinator.release(key);
            return { kind: 'row', row: again, woken: false };
          }
          if (round > 0) this.d.stats.takeovers++;
          return { kind: 'claimed', key, watermark: await repository.watermark() };
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          const error = new CoalesceTimeoutError(messages.coalesceTimeout(ctx.url, options.coalesceWaitTimeoutMs));
          this.logger.warn(error.message);
          throw error;
        }
        if ((await wake.wait(Math.min(options.coalesceTakeoverCheckMs, remaining))) === 'woken') {
          const again = await repository.read(ctx.candidates, ctx.scope, options.errorTtlMs);
          if (again) return { kind: 'row', row: again, woken: true };
          // Finished without a row (discarded, failed or not found): claim it ourselves.
        }
      } finally {
        wake.cancel();
      }
    }
  }

  private async compute(
    flight: EntryFlight,
    ctx: LookupContext,
    snapshot: GenerationSnapshot,
    attempt: number,
    watermark: string,
  ): Promise<Outcome> {
    const { generations, repository, options, stats } = this.d;
    for (const candidate of ctx.candidates) {
      const computeStarted = performance.now();
      let loaded;
      try {
        loaded = await callSource(this.d.source, candidate, {
          realmURL: ctx.realm,
          scope: ctx.scope,
          timeoutMs: options.sourceTimeoutMs,
          shutdown: this.d.shutdown,
        });
      } catch (error) {
        stats.sourceErrors++;
        this.logger.warn(`${(error as Error).message} (nothing cached)`);
        throw error;
      }
      if (loaded === null) continue;
      stats.computes++;
      const alias = aliasOf(candidate, options.extensions);
      const deps = [
        ...new Set(loaded.deps.map((dep) => normaliseDependency(dep, candidate, options.extensions)).filter((d) => d !== undefined)),
      ].filter((dep) => dep !== alias);
      const error = assembleError(candidate, loaded.error, await this.dependencyErrors(flight, deps, ctx.scope));
      this.d.emit({
        type: 'computed',
        url: candidate,
        realm: ctx.realm,
        scope: ctx.scope,
        attempt,
        durationMs: performance.now() - computeStarted,
        ...(error ? { error: error.message } : {}),
      });
      if (!generations.isCurrent(snapshot)) return { done: false, reason: 'invalidated-locally' };
      if (Date.now() - snapshot.takenAt > options.fenceRetentionMs) return { done: false, reason: 'fence-expired' };
      const persistStarted = performance.now();
      const createdAt = await repository.fencedUpsert(
        {
          url: candidate,
          scope: ctx.scope,
          alias,
          realm: ctx.realm,
          definitions: loaded.definitions,
          deps,
          error,
          diagnostics: { computeMs: Math.round(performance.now() - computeStarted), attempt, requested: ctx.url },
        },
        watermark,
      );
      if (!createdAt) return { done: false, reason: 'fenced-by-database' };
      stats.persisted++;
      this.d.emit({
        type: 'persisted',
        url: candidate,
        realm: ctx.realm,
        scope: ctx.scope,
        durationMs: performance.now() - persistStarted,
      });
      const entry: ModuleCacheEntry = {
        url: candidate,
        realmURL: ctx.realm,
        scope: ctx.scope,
        definitions: loaded.definitions,
        deps,
        ...(error ? { error } : {}),
        createdAt,
      };
      if (generations.isCurrent(snapshot)) this.d.remember([...new Set([ctx.url, candidate])], entry, alias);
      return { done: true, entry };
    }
    return { done: true, entry: undefined };
  }

  /** Errors of the module's dependencies inside registered realms (looked up, so computed if needed). */
  private async dependencyErrors(flight: EntryFlight, deps: string[], scope: string): Promise<ModuleError[]> {
    const inRealm = deps.filter((dep) => this.d.realms.find(dep) !== undefined);
    const errors = await Promise.all(
      inRealm.map(async (dep): Promise<ModuleError[]> => {
        try {
          const entry = await this.d.lookupDependency(dep, scope, flight);
          if (entry === DEPENDENCY_CYCLE) return [];
          if (entry === undefined) return [{ message: `module not found: ${dep}`, status: 404, url: dep }];
          return entry.error ? [{ ...entry.error, url: entry.error.url ?? entry.url }] : [];
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          return [{ message, status: error instanceof DefinitionSourceError ? 502 : 500, url: dep }];
        }
      }),
    );
    return errors.flat();
  }
}
