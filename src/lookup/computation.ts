import { Logger } from '@nestjs/common';
import { PopulateCoordinator, type Coordination } from '../coordination/populate-coordinator';
import type { ResolvedModuleCacheOptions } from '../module-cache.options';
import type { ModuleCacheEvent, ModuleCacheStats } from '../observability/events';
import { toEntry, type FencePart, type ModuleCacheRepository, type StoredRow } from '../persistence/module-cache.repository';
import type { DefinitionSource, ModuleCacheEntry, ModuleError } from '../types';
import type { GenerationSnapshot, Generations } from './generations';
import type { Flight } from './in-flight';
import { clampErrorDocument, withCachedDependencyErrors, withComputedDependencyErrors } from './module-errors';
import { callSource } from './source-call';
import type { RealmRegistry, UrlResolver } from './urls';

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
  /** A result every persist of which was refused (churn): served to the callers waiting for it, never stored or built upon. */
  unpersisted?: true;
}

export const DEPENDENCY_CYCLE = Symbol('dependency-cycle');

export type ResolvedFlight = Flight<Resolved | undefined>;
type DiscardReason = Extract<ModuleCacheEvent, { type: 'discarded' }>['reason'];
type Outcome = { done: true; resolved: Resolved | undefined } | { done: false; reason: DiscardReason; last: Resolved };

/** Dependency lookups of one computation that run at once. */
const DEPENDENCY_CONCURRENCY = 8;

export interface ComputationDeps {
  options: ResolvedModuleCacheOptions;
  source: DefinitionSource;
  repository: ModuleCacheRepository;
  generations: Generations;
  realms: RealmRegistry;
  urls: UrlResolver;
  shutdown: AbortSignal;
  stats: ModuleCacheStats;
  emit(event: ModuleCacheEvent): void;
  lookupDependency(url: string, scope: string, waiter: ResolvedFlight): Promise<Resolved | undefined | typeof DEPENDENCY_CYCLE>;
  /** Cached entries (memory, else one table read) of these module aliases; never computes. */
  cachedByAlias(aliases: string[], scope: string): Promise<Map<string, Resolved>>;
  /** Keeps a result in the memory tier under each of `urls`. */
  remember(urls: string[], resolved: Resolved): void;
  /** Entries the database found invalidated after their watermark: not to be served or incorporated again. */
  forgetStale(aliases: string[]): void;
  /** Counts a table hit and emits its event (the lookup service's, shared with lookupCached/lookupMany). */
  tableHit(ctx: LookupContext, started: number): void;
  coordinator: PopulateCoordinator | null;
}

/**
 * One flight's work: read the table (rows come with the fence watermark they are valid as of),
 * else compute from the source, attach dependency errors, and persist through the database
 * fence. A discarded attempt is retried with a new snapshot, at most `maxRetries` times; when
 * every attempt was discarded, the callers already waiting get the last result anyway (neither
 * stored nor kept in memory): churn alone never fails a lookup.
 */
export class ComputationRunner {
  private readonly logger = new Logger('CachingDefinitionLookup');

  constructor(private readonly deps: ComputationDeps) {}

  /**
   * `coalesce: false` for dependency lookups: a computation never waits on a peer's claim (two
   * processes computing each other's imports would wait on each other).
   */
  start(key: string, ctx: LookupContext, started: number, { coalesce }: { coalesce: boolean }): ResolvedFlight {
    const flight: ResolvedFlight = {
      key,
      realm: ctx.realm,
      url: ctx.url,
      alias: ctx.alias,
      scope: ctx.scope,
      coalesce,
      promise: Promise.resolve(undefined),
      waitingOn: new Set(),
    };
    // Taken before the first await: anything that invalidates from here on is seen.
    const snapshot = this.deps.generations.snapshot(ctx.realm, ctx.alias);
    flight.promise = this.run(flight, ctx, snapshot, started);
    return flight;
  }

  private async run(flight: ResolvedFlight, ctx: LookupContext, first: GenerationSnapshot, started: number): Promise<Resolved | undefined> {
    let snapshot = first;
    for (let attempt = 1; ; attempt++) {
      let outcome: Outcome;
      try {
        outcome = await this.attempt(flight, ctx, snapshot, attempt, started);
      } finally {
        this.deps.generations.release(snapshot);
      }
      if (outcome.done) return outcome.resolved;
      this.deps.stats.discards++;
      this.deps.emit({ type: 'discarded', reason: outcome.reason, attempt, url: ctx.url, realm: ctx.realm, scope: ctx.scope });
      if (attempt > this.deps.options.maxRetries) {
        this.deps.stats.servedUnpersisted++;
        this.logger.warn(
          `${ctx.url} (${ctx.scope}) was invalidated during each of ${attempt} computations: serving the last result to the ` +
            `callers already waiting, neither stored nor kept in memory (maxRetries = ${this.deps.options.maxRetries})`,
        );
        this.deps.emit({
          type: 'served-unpersisted',
          reason: outcome.reason,
          attempts: attempt,
          url: ctx.url,
          realm: ctx.realm,
          scope: ctx.scope,
        });
        return { ...outcome.last, unpersisted: true };
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
  ): Promise<Outcome> {
    const { repository, options, stats, coordinator } = this.deps;
    const read = () => repository.read(ctx.candidates, ctx.scope, options.errorTtlMs);
    const first = await read();
    if (first.row) {
      const outcome = this.serveRow(first.row, first.watermark, ctx, snapshot);
      if (outcome.done) this.deps.tableHit(ctx, started);
      return outcome;
    }
    if (attempt === 1) {
      stats.misses++;
      this.deps.emit({ type: 'miss', url: ctx.url, realm: ctx.realm, scope: ctx.scope, durationMs: performance.now() - started });
    }
    const coordination: Coordination =
      flight.coalesce && coordinator
        ? await coordinator.coordinate(PopulateCoordinator.keyOf(flight.key), read, ctx.url)
        : { kind: 'alone' };
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
    const watermark = coordination.kind === 'claimed' ? coordination.watermark : first.watermark;
    try {
      return await this.compute(flight, ctx, snapshot, attempt, watermark);
    } finally {
      if (coordination.kind === 'claimed') coordinator!.release(coordination.key);
    }
  }

  private serveRow(row: StoredRow, watermark: string, ctx: LookupContext, snapshot: GenerationSnapshot): Outcome {
    const resolved: Resolved = { entry: toEntry(row), alias: row.alias, realm: row.realm, watermark };
    // The row may belong to an invalidation that just committed: read again rather than serve it.
    if (!this.deps.generations.isCurrent(snapshot)) return { done: false, reason: 'invalidated-locally', last: resolved };
    this.deps.remember([ctx.url], resolved);
    return { done: true, resolved };
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
      const alias = this.deps.urls.alias(candidate);
      const deps = [...new Set(loaded.deps.map((dep) => this.deps.urls.dependency(dep, candidate)).filter((d) => d !== undefined))].filter(
        (dep) => dep !== alias,
      );
      let error: ModuleError | undefined;
      let incorporated: Incorporated = { parts: [], unpersisted: false };
      if (options.dependencyErrors === 'compute') {
        // Looked up as written (`./x.ts`), not by alias: one candidate, not one per extension.
        const written = loaded.deps.map((d) => this.deps.urls.dependencyURL(d, candidate)).filter((d) => d !== undefined);
        const byAlias = new Map(written.map((d) => [this.deps.urls.alias(d), d]));
        const found = await this.computedDependencyErrors(
          flight,
          deps.map((alias) => byAlias.get(alias) ?? alias),
          ctx.scope,
        );
        incorporated = found;
        error = withComputedDependencyErrors(candidate, loaded.error, found.errors);
      } else if (loaded.error) {
        const ownDeps = Array.isArray(loaded.error.deps) ? loaded.error.deps.map((d) => this.deps.urls.dependency(d, candidate)) : [];
        const found = await this.cachedDependencyErrors([...deps, ...ownDeps.filter((d) => d !== undefined)], ctx.scope);
        incorporated = found;
        error = withCachedDependencyErrors(loaded.error, found.errors);
      }
      if (error) error = clampErrorDocument(error, options.maxErrorBytes);
      this.deps.emit({
        type: 'computed',
        url: candidate,
        realm: ctx.realm,
        scope: ctx.scope,
        attempt,
        durationMs: performance.now() - computeStarted,
        ...(error ? { error: error.message } : {}),
      });
      const diagnostics = {
        computeMs: Math.round(performance.now() - computeStarted),
        attempt,
        requested: ctx.url,
        ...(loaded.diagnostics !== undefined ? { source: loaded.diagnostics } : {}),
      };
      // Fields in the order toEntry() reads them back: an entry is the same JSON from every tier.
      const entry: ModuleCacheEntry = {
        url: candidate,
        realmURL: ctx.realm,
        scope: ctx.scope,
        definitions: loaded.definitions,
        deps,
        ...(error ? { error } : {}),
        diagnostics,
        createdAt: new Date(),
      };
      const unstored: Resolved = { entry, alias, realm: ctx.realm, watermark };
      if (!generations.isCurrent(snapshot)) return { done: false, reason: 'invalidated-locally', last: unstored };
      // Built on a result that could not be stored itself: store neither.
      if (incorporated.unpersisted) return { done: false, reason: 'stale-dependency', last: unstored };
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
          diagnostics,
        },
        watermark,
        incorporated.parts,
      );
      if (persisted.status !== 'persisted') {
        // What the database knows to be stale, this process may not have heard of yet.
        this.deps.forgetStale(persisted.stale.filter((a) => a !== alias));
        return { done: false, reason: persisted.status === 'expired' ? 'fence-expired' : 'fenced-by-database', last: unstored };
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
        ...unstored,
        entry: { ...entry, createdAt: persisted.createdAt },
        watermark: persisted.watermark,
      };
      if (generations.isCurrent(snapshot)) this.deps.remember([...new Set([ctx.url, candidate])], resolved);
      return { done: true, resolved };
    }
    return { done: true, resolved: undefined };
  }

  /**
   * `dependencyErrors: 'compute'`: errors of the module's dependencies inside registered realms
   * (looked up, so computed if needed; at most DEPENDENCY_CONCURRENCY at once), and every cached
   * entry that went into them, for the fence. Only modules' own errors and "not found" are
   * errors: a dependency lookup that fails (the source threw, a timeout, the database, shutdown)
   * fails this one too.
   */
  private async computedDependencyErrors(
    flight: ResolvedFlight,
    deps: string[],
    scope: string,
  ): Promise<Incorporated & { errors: ModuleError[] }> {
    const inRealm = deps.filter((dep) => this.deps.realms.find(dep) !== undefined);
    const found: Array<Resolved | undefined | typeof DEPENDENCY_CYCLE> = [];
    for (let i = 0; i < inRealm.length; i += DEPENDENCY_CONCURRENCY) {
      found.push(
        ...(await Promise.all(inRealm.slice(i, i + DEPENDENCY_CONCURRENCY).map((dep) => this.deps.lookupDependency(dep, scope, flight)))),
      );
    }
    const parts: FencePart[] = [];
    const errors: ModuleError[] = [];
    let unpersisted = false;
    found.forEach((resolved, i) => {
      if (resolved === DEPENDENCY_CYCLE) return;
      if (resolved === undefined) {
        errors.push({ message: `module not found: ${inRealm[i]}`, status: 404, url: inRealm[i] });
        return;
      }
      if (resolved.unpersisted) unpersisted = true;
      parts.push({ alias: resolved.alias, realm: resolved.realm, watermark: resolved.watermark });
      if (resolved.entry.error) errors.push({ ...resolved.entry.error, url: resolved.entry.error.url ?? resolved.entry.url });
    });
    return { errors, parts, unpersisted };
  }

  /**
   * `dependencyErrors: 'cached'` (the seed's way, for a module whose own computation errored):
   * the errors of cached entries of its dependencies, and transitively of theirs, following only
   * dependencies that errored; never computing one, skipping `.json`, one read per level. Every
   * cached entry consulted — with or without an error — is a part the fence checks.
   */
  private async cachedDependencyErrors(deps: string[], scope: string): Promise<Incorporated & { errors: ModuleError[] }> {
    const eligible = (dep: string) => !dep.endsWith('.json') && this.deps.realms.find(dep) !== undefined;
    const seen = new Set<string>();
    const enqueue = (candidates: Iterable<string>) => [...candidates].filter((d) => eligible(d) && !seen.has(d) && seen.add(d));
    const parts: FencePart[] = [];
    const errors: ModuleError[] = [];
    for (let level = enqueue(deps); level.length > 0;) {
      const found = await this.deps.cachedByAlias(level, scope);
      const next: string[] = [];
      for (const alias of level) {
        const resolved = found.get(alias);
        if (!resolved) continue;
        parts.push({ alias: resolved.alias, realm: resolved.realm, watermark: resolved.watermark });
        const { error, deps: theirs, url } = resolved.entry;
        if (!error) continue;
        errors.push(error);
        const declared = Array.isArray(error.deps) ? error.deps.map((d) => this.deps.urls.dependency(d, url)) : [];
        next.push(...enqueue([...theirs, ...declared.filter((d) => d !== undefined)]));
      }
      level = next;
    }
    return { errors, parts, unpersisted: false };
  }
}

interface Incorporated {
  parts: FencePart[];
  /** Built on a result that could not be stored itself. */
  unpersisted: boolean;
}
