import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type BeforeApplicationShutdown,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { Subject, type Observable, type Subscription } from 'rxjs';
import { ModuleCacheInvalidationListener } from '../broadcast/invalidation-listener';
import type { PopulateCoordinator } from '../coordination/populate-coordinator';
import { DefinitionNotFoundError, InvalidScopeError } from '../errors';
import { messages } from '../messages';
import {
  RESOLVED_DEFINITION_SOURCE,
  MODULE_CACHE_COORDINATOR,
  MODULE_CACHE_ORIGIN,
  MODULE_CACHE_REPOSITORY,
  RESOLVED_MODULE_CACHE_OPTIONS,
} from '../module-cache.constants';
import type { ResolvedModuleCacheOptions } from '../module-cache.options';
import { emptyStats, type ModuleCacheEvent, type ModuleCacheStats } from '../observability/events';
import { toEntry, type ModuleCacheRepository } from '../persistence/module-cache.repository';
import { PUBLIC_SCOPE, type DefinitionSource, type LookupOptions, type ModuleCacheEntry } from '../types';
import { ComputationRunner, DEPENDENCY_CYCLE, type LookupContext, type Resolved, type ResolvedFlight } from './computation';
import { Generations } from './generations';
import { subscribeToInvalidations } from './remote-invalidations';
import { flightKey, InFlight } from './in-flight';
import { Invalidator } from './invalidator';
import { MemoryTier, type MemoryRecord } from './memory-tier';
import { aliasOf, canonicalURL, candidateURLs, RealmRegistry, urlVariants } from './urls';

/**
 * The lookup service: memory tier → table tier → source, with single-flight, generation
 * fencing (local counters plus the database fence), and invalidation that fans out through
 * the dependency graph and reaches peers by NOTIFY in the same transaction as the delete.
 */
@Injectable()
export class CachingDefinitionLookup implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('CachingDefinitionLookup');
  private readonly events = new Subject<ModuleCacheEvent>();
  /** Every hit, miss, computation, persist, discard, invalidation and listener change. */
  readonly events$: Observable<ModuleCacheEvent> = this.events.asObservable();
  private readonly counters: ModuleCacheStats = emptyStats();
  private readonly generations = new Generations();
  private readonly memory: MemoryTier;
  private readonly flights = new InFlight<Resolved | undefined>();
  private readonly realms: RealmRegistry;
  private readonly shutdown = new AbortController();
  private readonly runner: ComputationRunner;
  private readonly subscription: Subscription | undefined;
  private readonly invalidator: Invalidator;

  constructor(
    @Inject(RESOLVED_MODULE_CACHE_OPTIONS) private readonly options: ResolvedModuleCacheOptions,
    @Inject(RESOLVED_DEFINITION_SOURCE) source: DefinitionSource,
    @Inject(MODULE_CACHE_REPOSITORY) private readonly repository: ModuleCacheRepository,
    @Inject(MODULE_CACHE_ORIGIN) readonly origin: string,
    @Optional() @Inject(ModuleCacheInvalidationListener) private readonly listener: ModuleCacheInvalidationListener | null = null,
    @Optional() @Inject(MODULE_CACHE_COORDINATOR) private readonly coordinator: PopulateCoordinator | null = null,
  ) {
    this.realms = new RealmRegistry(options.realms);
    this.memory = new MemoryTier(options.memory === false ? false : options.memory.maxEntries);
    this.runner = new ComputationRunner({
      options,
      source,
      repository,
      generations: this.generations,
      realms: this.realms,
      shutdown: this.shutdown.signal,
      stats: this.counters,
      emit: (event) => this.emit(event),
      lookupDependency: (url, scope, waiter) => this.resolve(url, scope, waiter),
      coordinator,
      remember: (urls, resolved) => urls.forEach((u) => this.memory.set(u, resolved.entry.scope, resolved)),
      forgetStale: (aliases) => this.forgetModules(aliases),
      tableHit: (ctx, started) => this.countTableHit(ctx, started),
    });
    this.invalidator = new Invalidator({
      options,
      repository,
      realms: this.realms,
      origin,
      stats: this.counters,
      logger: this.logger,
      emit: (event) => this.emit(event),
      forgetModules: (aliases) => this.forgetModules(aliases),
      forgetRealm: (realm) => this.forgetRealm(realm),
      forgetAll: () => this.forgetAll(),
    });
    this.subscription = listener
      ? subscribeToInvalidations(listener, {
          origin,
          realms: this.realms,
          extensions: options.extensions,
          logger: this.logger,
          forgetModules: (aliases) => this.forgetModules(aliases),
          forgetRealm: (realm) => this.forgetRealm(realm),
          forgetAll: () => this.forgetAll(),
          received: () => this.counters.notifications.received++,
          emit: (event) => this.emit(event),
        })
      : undefined;
  }

  async onModuleInit(): Promise<void> {
    await this.repository.assertSchema();
    if (!this.listener && this.options.memory !== false) {
      this.logger.warn(
        'listener: false — this process does not hear invalidations made by other processes, so its memory tier can serve ' +
          'entries they invalidated; use memory: false when several processes share the table',
      );
    }
  }

  /**
   * Before connections close: abandon in-flight computations (their callers get
   * ModuleCacheShutdownError) and let go of their claims, so that peers are woken and the
   * dedicated connection closes with nothing in flight.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.subscription?.unsubscribe();
    this.shutdown.abort();
    await Promise.allSettled(this.flights.all().map((f) => f.promise));
    await this.coordinator?.close();
  }

  onApplicationShutdown(): void {
    this.events.complete();
  }

  /** The entry from memory, else the table, else computed and persisted; undefined when no candidate exists. */
  async lookup(moduleURL: string, options: LookupOptions = {}): Promise<ModuleCacheEntry | undefined> {
    return (await this.resolve(moduleURL, scopeOf(options)))?.entry;
  }

  /** One definition; throws DefinitionNotFoundError when the module or the definition is missing or errored. */
  async lookupDefinition(moduleURL: string, name: string, options: LookupOptions = {}): Promise<unknown> {
    const entry = await this.lookup(moduleURL, options);
    if (!entry) throw new DefinitionNotFoundError(moduleURL, name, 'module not found');
    if (entry.error) throw new DefinitionNotFoundError(moduleURL, name, `module has an error: ${entry.error.message}`);
    if (!Object.prototype.hasOwnProperty.call(entry.definitions, name)) {
      throw new DefinitionNotFoundError(moduleURL, name, 'no such export');
    }
    const definition = entry.definitions[name];
    if (isErrorDefinition(definition)) throw new DefinitionNotFoundError(moduleURL, name, `definition failed: ${definition.error.message}`);
    return definition;
  }

  /** Memory or table only; never computes. */
  async lookupCached(moduleURL: string, options: LookupOptions = {}): Promise<ModuleCacheEntry | undefined> {
    const scope = scopeOf(options);
    const ctx = this.context(moduleURL, scope);
    const started = performance.now();
    const hit = this.memoryHit(ctx, started);
    if (hit) return hit.entry;
    const snapshot = this.generations.snapshot(ctx.realm, ctx.alias);
    try {
      const { row, watermark } = await this.repository.read(ctx.candidates, scope, this.options.errorTtlMs);
      if (!row) return undefined;
      const entry = toEntry(row);
      this.countTableHit(ctx, started);
      if (this.generations.isCurrent(snapshot)) this.memory.set(ctx.url, scope, { entry, alias: row.alias, realm: row.realm, watermark });
      return entry;
    } finally {
      this.generations.release(snapshot);
    }
  }

  /** Cached entries of many URLs: memory first, then one query for the rest. */
  async lookupMany(moduleURLs: string[], options: LookupOptions = {}): Promise<Map<string, ModuleCacheEntry | undefined>> {
    const scope = scopeOf(options);
    const started = performance.now();
    const result = new Map<string, ModuleCacheEntry | undefined>();
    const pending: LookupContext[] = [];
    for (const input of moduleURLs) {
      const ctx = this.context(input, scope);
      const hit = this.memoryHit(ctx, started);
      if (hit) result.set(input, hit.entry);
      else pending.push({ ...ctx, input });
    }
    if (pending.length) {
      const { rows } = await this.repository.readMany([...new Set(pending.flatMap((c) => c.candidates))], scope, this.options.errorTtlMs);
      const byURL = new Map(rows.map((r) => [r.url, r]));
      for (const ctx of pending) {
        const row = ctx.candidates.map((c) => byURL.get(c)).find((r) => r !== undefined);
        if (row) this.countTableHit(ctx, started);
        result.set(ctx.input!, row ? toEntry(row) : undefined);
      }
    }
    return result;
  }

  /** Invalidates the module, its URL variants and every transitive consumer (all scopes); returns the URLs invalidated. */
  invalidate(moduleURL: string): Promise<string[]> {
    return this.invalidator.invalidate(moduleURL);
  }

  /** Clears every row of one registered realm, here and in every peer. Returns the rows deleted. */
  clearRealm(realmURL: string): Promise<number> {
    return this.invalidator.clearRealm(realmURL);
  }

  /** Clears everything, here and in every peer. Returns the rows deleted. */
  clearAll(): Promise<number> {
    return this.invalidator.clearAll();
  }

  stats(): ModuleCacheStats {
    const listener = this.listener?.stats();
    return structuredClone({
      ...this.counters,
      takeovers: this.coordinator?.takeovers ?? 0,
      uncoordinated: this.coordinator?.uncoordinated ?? 0,
      notifications: { ...this.counters.notifications, rejected: listener?.rejected ?? 0 },
      reconnects: listener?.reconnects ?? 0,
      inFlight: this.flights.size,
      memoryEntries: this.memory.size,
      trackedGenerations: this.generations.trackedModules,
    });
  }

  // ---- internals shared with the listener subscription -------------------------------

  /** Synchronously bumps, drops doomed in-flight computations and evicts memory for these aliases. */
  protected forgetModules(aliases: Iterable<string>): void {
    const set = new Set(aliases);
    for (const alias of set) {
      this.generations.bumpModule(alias);
      this.memory.evictAlias(alias);
    }
    this.flights.drop((f) => set.has(f.alias));
  }

  /** `prefix`: a realm, or any URL prefix ending in "/": every registered realm under it is forgotten. */
  protected forgetRealm(prefix: string): void {
    for (const realm of this.realms.all) if (realm.startsWith(prefix)) this.generations.bumpRealm(realm);
    this.memory.evictRealm(prefix);
    this.flights.drop((f) => f.realm.startsWith(prefix));
  }

  protected forgetAll(): void {
    this.generations.bumpGlobal();
    this.memory.clear();
    this.flights.drop(() => true);
  }

  protected emit(event: ModuleCacheEvent): void {
    this.events.next(event);
  }

  private async resolve(moduleURL: string, scope: string): Promise<Resolved | undefined>;
  private async resolve(moduleURL: string, scope: string, waiter: ResolvedFlight): Promise<Resolved | undefined | typeof DEPENDENCY_CYCLE>;
  private async resolve(
    moduleURL: string,
    scope: string,
    waiter?: ResolvedFlight,
  ): Promise<Resolved | undefined | typeof DEPENDENCY_CYCLE> {
    const started = performance.now();
    const ctx = this.context(moduleURL, scope);
    const hit = this.memoryHit(ctx, started);
    if (hit) return hit;
    // A dependency lookup (stored as an alias) joins a local flight for any spelling of the module,
    // so `x.ts` ↔ `x` cycles are seen and nothing is computed twice; it never joins a flight that
    // coalesces across processes, which may wait on a peer's claim (two processes computing each
    // other's imports would wait on each other). A top-level lookup joins either kind.
    const coalesce = waiter === undefined;
    let flight = coalesce
      ? (this.flights.get(flightKey(ctx.realm, ctx.url, scope, { coalesce: true })) ??
        this.flights.get(flightKey(ctx.realm, ctx.url, scope, { coalesce: false })))
      : urlVariants(ctx.url, this.options.extensions)
          .map((variant) => this.flights.get(flightKey(ctx.realm, variant, scope, { coalesce: false })))
          .find((f) => f !== undefined);
    if (!flight) {
      flight = this.runner.start(flightKey(ctx.realm, ctx.url, scope, { coalesce }), ctx, started, { coalesce });
      this.flights.add(flight);
      const registered = flight;
      flight.promise.then(
        () => this.flights.remove(registered),
        () => this.flights.remove(registered),
      );
    }
    if (!waiter) return flight.promise;
    if (flight === waiter || InFlight.reaches(flight, waiter)) return DEPENDENCY_CYCLE;
    waiter.waitingOn.add(flight);
    try {
      return await flight.promise;
    } finally {
      waiter.waitingOn.delete(flight);
    }
  }

  private context(moduleURL: string, scope: string): LookupContext {
    const url = canonicalURL(moduleURL);
    const realm = this.realms.resolve(url);
    return { url, realm, scope, alias: aliasOf(url, this.options.extensions), candidates: candidateURLs(url, this.options.extensions) };
  }

  private memoryHit(ctx: LookupContext, started: number): MemoryRecord | undefined {
    // Only while the heartbeat proves that invalidations reach this process.
    if (this.listener && !this.listener.isTrusted()) return undefined;
    const record = this.memory.get(ctx.url, ctx.scope, this.options.errorTtlMs);
    if (record) {
      this.counters.hits.memory++;
      if (this.events.observed) {
        this.emit({
          type: 'hit',
          tier: 'memory',
          url: ctx.url,
          realm: ctx.realm,
          scope: ctx.scope,
          durationMs: performance.now() - started,
        });
      }
    }
    return record;
  }

  private countTableHit(ctx: LookupContext, started: number): void {
    this.counters.hits.table++;
    if (this.events.observed) {
      this.emit({ type: 'hit', tier: 'table', url: ctx.url, realm: ctx.realm, scope: ctx.scope, durationMs: performance.now() - started });
    }
  }
}

const MAX_SCOPE_LENGTH = 512;

function scopeOf(options: LookupOptions): string {
  const scope = options.scope ?? PUBLIC_SCOPE;
  if (typeof scope !== 'string' || scope.length === 0 || scope.length > MAX_SCOPE_LENGTH) {
    throw new InvalidScopeError(messages.badScope(`must be a non-empty string of at most ${MAX_SCOPE_LENGTH} characters`));
  }
  // Postgres text cannot hold NUL: reject it here rather than fail in the database.
  if (scope.includes('\u0000')) throw new InvalidScopeError(messages.badScope('must not contain NUL characters'));
  return scope;
}

function isErrorDefinition(value: unknown): value is { type: 'error'; error: { message: string } } {
  const v = value as { type?: unknown; error?: { message?: unknown } } | null;
  return typeof v === 'object' && v !== null && v.type === 'error' && typeof v.error?.message === 'string';
}
