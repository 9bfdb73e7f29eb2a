import { Logger } from '@nestjs/common';
import { PopulateCoordinator } from '../coordination/populate-coordinator';
import { CoalesceTimeoutError, ComputationDiscardedError, DefinitionSourceError } from '../errors';
import { messages } from '../messages';
import type { ResolvedModuleCacheOptions } from '../module-cache.options';
import type { ModuleCacheEvent, ModuleCacheStats } from '../observability/events';
import { toEntry, type FencePart, type ModuleCacheRepository, type StoredRow } from '../persistence/module-cache.repository';
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

/** An entry as the lookup layer passes it around: with the fence watermark it is valid as of. */
export interface Resolved {
  entry: ModuleCacheEntry;
  alias: string;
  realm: string;
  watermark: string;
}

export const DEPENDENCY_CYCLE = Symbol('dependency-cycle');

export type ResolvedFlight = Flight<Resolved | undefined>;
type DiscardReason = Extract<ModuleCacheEvent, { type: 'discarded' }>['reason'];
type Outcome = { done: true; resolved: Resolved | undefined } | { done: false; reason: DiscardReason };

export interface ComputationDeps {
  options: ResolvedModuleCacheOptions;
  source: DefinitionSource;
  repository: ModuleCacheRepository;
  generations: Generations;
  realms: RealmRegistry;
  shutdown: AbortSignal;
  stats: ModuleCacheStats;
  emit(event: ModuleCacheEvent): void;
  lookupDependency(url: string, scope: string, waiter: ResolvedFlight): Promise<Resolved | undefined | typeof DEPENDENCY_CYCLE>;
  /** Keeps a result in the memory tier under each of `urls`. */
  remember(urls: string[], resolved: Resolved): void;
  /** Entries the database found invalidated after their watermark: not to be served or incorporated again. */
  forgetStale(aliases: string[]): void;
  /** Counts a table hit and emits its event (the lookup service's, shared with lookupCached/lookupMany). */
  tableHit(ctx: LookupContext, started: number): void;
  coordinator: PopulateCoordinator | null;
}

type Coordination =
  | { kind: 'row'; row: StoredRow; watermark: string; woken: boolean }
  | { kind: 'claimed'; key: string; watermark: string }
  | { kind: 'alone' };

/**
 * One flight's work: read the table (rows come with the fence watermark they are valid as of),
 * else compute from the source, attach dependency errors, and persist through the database
 * fence; a discarded attempt is retried with a new snapshot, at most `maxRetries` times.
 */
export class ComputationRunner {
  private readonly logger = new Logger('CachingDefinitionLookup');

  constructor(private readonly deps: ComputationDeps) {}

  /**
   * `coalesce: false` for dependency lookups: waiting on a peer from inside a computation could
   * deadlock across processes.
   */
  start(key: string, ctx: LookupContext, started: number, { coalesce }: { coalesce: boolean }): ResolvedFlight {
    const flight: ResolvedFlight = {
      key,
      realm: ctx.realm,
      url: ctx.url,
      alias: ctx.alias,
      scope: ctx.scope,
      promise: Promise.resolve(undefined),
      waitingOn: new Set(),
    };
    // Taken before the first await: anything that invalidates from here on is seen.
    const snapshot = this.deps.generations.snapshot(ctx.realm, ctx.alias);
    flight.promise = this.run(flight, ctx, snapshot, started, coalesce);
    return flight;
  }

  private async run(
    flight: ResolvedFlight,
    ctx: LookupContext,
    first: GenerationSnapshot,
    started: number,
    coalesce: boolean,
  ): Promise<Resolved | undefined> {
    let snapshot = first;
    for (let attempt = 1; ; attempt++) {
      let outcome: Outcome;
      try {
        outcome = await this.attempt(flight, ctx, snapshot, attempt, started, coalesce);
      } finally {
        this.deps.generations.release(snapshot);
      }
      if (outcome.done) return outcome.resolved;
      this.deps.stats.discards++;
      this.deps.emit({ type: 'discarded', reason: outcome.reason, attempt, url: ctx.url, realm: ctx.realm, scope: ctx.scope });
      if (attempt > this.deps.options.maxRetries) {
        const error = new ComputationDiscardedError(
          `${ctx.url} was invalidated during each of ${attempt} computations; giving up (maxRetries = ${this.deps.options.maxRetries})`,
        );
        this.logger.warn(error.message);
        throw error;
      }
      this.logger.debug(`${ctx.url} (${ctx.scope}): computation discarded (${outcome.reason}), retrying`);
      this.deps.stats.retries++;
      snapshot = this.deps.generations.snapshot(ctx.realm, ctx.alias);
    }
  }

  private async attempt(
    flight: ResolvedFlight,
    ctx: LookupContext,
    snapshot: GenerationSnapshot,
    attempt: number,
    started: number,
    coalesce: boolean,
  ): Promise<Outcome> {
    const { repository, options, stats } = this.deps;
    const read = await repository.read(ctx.candidates, ctx.scope, options.errorTtlMs);
    if (read.row) {
      const outcome = this.serveRow(read.row, read.watermark, ctx, snapshot);
      if (outcome.done) this.deps.tableHit(ctx, started);
      return outcome;
    }
    if (attempt === 1) {
      stats.misses++;
      this.deps.emit({ type: 'miss', url: ctx.url, realm: ctx.realm, scope: ctx.scope, durationMs: performance.now() - started });
    }
    const coordination: Coordination = coalesce && this.deps.coordinator ? await this.coordinate(flight, ctx) : { kind: 'alone' };
    if (coordination.kind === 'row') {
      stats.coalescedWaits++;
      this.deps.emit({
        type: 'coalesced',
        url: ctx.url,
        realm: ctx.realm,
        scope: ctx.scope,
        woken: coordination.woken,
        durationMs: performance.now() - started,
      });
      return this.serveRow(coordination.row, coordination.watermark, ctx, snapshot);
    }
    // The miss was read under this watermark: the source runs after it, so whatever it reads is
    // at least as new, and every invalidation it could have missed has a higher sequence.
    const watermark = coordination.kind === 'claimed' ? coordination.watermark : read.watermark;
    try {
      return await this.compute(flight, ctx, snapshot, attempt, watermark);
    } finally {
      if (coordination.kind === 'claimed') void this.deps.coordinator!.release(coordination.key);
    }
  }

  private serveRow(row: StoredRow, watermark: string, ctx: LookupContext, snapshot: GenerationSnapshot): Outcome {
    // The row may belong to an invalidation that just committed: read again rather than serve it.
    if (!this.deps.generations.isCurrent(snapshot)) return { done: false, reason: 'invalidated-locally' };
    const resolved: Resolved = { entry: toEntry(row), alias: row.alias, realm: row.realm, watermark };
    this.deps.remember([ctx.url], resolved);
    return { done: true, resolved };
  }

  /**
   * Claims the key across processes, or waits to be woken by the claimant and reads its
   * result. The wake-up subscription exists before every check, so none is missed; a claimant
   * that dies releases its claim with its connection and the next check takes over.
   */
  private async coordinate(flight: ResolvedFlight, ctx: LookupContext): Promise<Coordination> {
    const coordinator = this.deps.coordinator!;
    const { repository, options } = this.deps;
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
          if (again.row) {
            void coordinator.release(key);
            return { kind: 'row', row: again.row, watermark: again.watermark, woken: false };
          }
          if (round > 0) this.deps.stats.takeovers++;
          return { kind: 'claimed', key, watermark: again.watermark };
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          const error = new CoalesceTimeoutError(messages.coalesceTimeout(ctx.url, options.coalesceWaitTimeoutMs));
          this.logger.warn(error.message);
          throw error;
        }
        if ((await wake.wait(Math.min(options.coalesceTakeoverCheckMs, remaining))) === 'woken') {
          const again = await repository.read(ctx.candidates, ctx.scope, options.errorTtlMs);
          if (again.row) return { kind: 'row', row: again.row, watermark: again.watermark, woken: true };
          // Finished without a row (discarded, failed or not found): claim it ourselves.
        }
      } finally {
        wake.cancel();
      }
    }
  }

  private async compute(
    flight: ResolvedFlight,
    ctx: LookupContext,
    snapshot: GenerationSnapshot,
    attempt: number,
    watermark: string,
  ): Promise<Outcome> {
    const { generations, repository, options, stats } = this.deps;
    for (const candidate of ctx.candidates) {
      const computeStarted = performance.now();
      let loaded;
      try {
        loaded = await callSource(this.deps.source, candidate, {
          realmURL: ctx.realm,
          scope: ctx.scope,
          timeoutMs: options.sourceTimeoutMs,
          shutdown: this.deps.shutdown,
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
      const incorporated = await this.dependencyErrors(flight, deps, ctx.scope);
      const error = assembleError(candidate, loaded.error, incorporated.errors);
      this.deps.emit({
        type: 'computed',
        url: candidate,
        realm: ctx.realm,
        scope: ctx.scope,
        attempt,
        durationMs: performance.now() - computeStarted,
        ...(error ? { error: error.message } : {}),
      });
      if (!generations.isCurrent(snapshot)) return { done: false, reason: 'invalidated-locally' };
      const persistStarted = performance.now();
      const persisted = await repository.persist(
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
        incorporated.parts,
      );
      if (persisted.status !== 'persisted') {
        // What the database knows to be stale, this process may not have heard of yet.
        this.deps.forgetStale(persisted.stale.filter((a) => a !== alias));
        return { done: false, reason: persisted.status === 'expired' ? 'fence-expired' : 'fenced-by-database' };
      }
      stats.persisted++;
      this.deps.emit({
        type: 'persisted',
        url: candidate,
        realm: ctx.realm,
        scope: ctx.scope,
        durationMs: performance.now() - persistStarted,
      });
      const resolved: Resolved = {
        entry: {
          url: candidate,
          realmURL: ctx.realm,
          scope: ctx.scope,
          definitions: loaded.definitions,
          deps,
          ...(error ? { error } : {}),
          createdAt: persisted.createdAt,
        },
        alias,
        realm: ctx.realm,
        watermark: persisted.watermark,
      };
      if (generations.isCurrent(snapshot)) this.deps.remember([...new Set([ctx.url, candidate])], resolved);
      return { done: true, resolved };
    }
    return { done: true, resolved: undefined };
  }

  /**
   * Errors of the module's dependencies inside registered realms (looked up, so computed if
   * needed), and every cached entry that went into them, for the fence.
   */
  private async dependencyErrors(
    flight: ResolvedFlight,
    deps: string[],
    scope: string,
  ): Promise<{ errors: ModuleError[]; parts: FencePart[] }> {
    const inRealm = deps.filter((dep) => this.deps.realms.find(dep) !== undefined);
    const parts: FencePart[] = [];
    const errors = await Promise.all(
      inRealm.map(async (dep): Promise<ModuleError[]> => {
        try {
          const resolved = await this.deps.lookupDependency(dep, scope, flight);
          if (resolved === DEPENDENCY_CYCLE) return [];
          if (resolved === undefined) return [{ message: `module not found: ${dep}`, status: 404, url: dep }];
          parts.push({ alias: resolved.alias, realm: resolved.realm, watermark: resolved.watermark });
          const { entry } = resolved;
          return entry.error ? [{ ...entry.error, url: entry.error.url ?? entry.url }] : [];
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          return [{ message, status: error instanceof DefinitionSourceError ? 502 : 500, url: dep }];
        }
      }),
    );
    return { errors: errors.flat(), parts };
  }
}
