import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type BeforeApplicationShutdown,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { setMaxListeners } from 'node:events';
import { LRUCache } from 'lru-cache';
import { Subject, type Observable, type Subscription } from 'rxjs';
import { ModuleCacheInvalidationListener } from '../broadcast/invalidation-listener';
import type { Membership } from '../coordination/membership';
import type { PopulateCoordinator } from '../coordination/populate-coordinator';
import { DefinitionNotFoundError, InvalidModuleURLError } from '../errors';
import { messages } from '../messages';
import {
  MODULE_CACHE_COORDINATOR,
  MODULE_CACHE_MEMBERSHIP,
  MODULE_CACHE_ORIGIN,
  MODULE_CACHE_REPOSITORY,
  RESOLVED_DEFINITION_SOURCE,
  RESOLVED_MODULE_CACHE_OPTIONS,
} from '../module-cache.constants';
import type { ResolvedModuleCacheOptions } from '../module-cache.options';
import { emptyStats, type ModuleCacheEvent, type ModuleCacheStats } from '../observability/events';
import { toEntry, type ModuleCacheRepository, type StoredRow } from '../persistence/module-cache.repository';
import { PUBLIC_SCOPE, type DefinitionSource, type LookupOptions, type ModuleCacheEntry } from '../types';
import { ComputationRunner, DEPENDENCY_CYCLE, type LookupContext, type Resolved, type ResolvedFlight } from './computation';
import { Generations } from './generations';
import { flightKey, InFlight } from './in-flight';
import { Invalidator } from './invalidator';
import { memoryKey, MemoryTier, type MemoryRecord } from './memory-tier';
import { subscribeToInvalidations } from './remote-invalidations';
import { lookupScope } from './scopes';
import { canonicalRealmURL, RealmRegistry, UrlResolver } from './urls';

const CONTEXT_CACHE_SIZE = 10_000;

type CachedContext = LookupContext & { publicKey: string };

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
  private readonly urls: UrlResolver;
  private readonly shutdown = new AbortController();
  /** Contexts by the caller's spelling of the URL (bounded; cleared when realms change, which changes them). */
  private readonly contexts = new LRUCache<string, CachedContext>({ max: CONTEXT_CACHE_SIZE });
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
    @Optional() @Inject(MODULE_CACHE_MEMBERSHIP) private readonly membership: Membership | null = null,
  ) {
    // Every source call listens on it for the call's duration (and lets go): more than ten at once is normal.
    setMaxListeners(0, this.shutdown.signal);
    this.realms = new RealmRegistry(options.realms);
    this.urls = new UrlResolver(options.extensions, options.prefixes);
    this.memory = new MemoryTier(options.memory === false ? false : options.memory.maxEntries);
    const forget = {
      forgetModules: (aliases: Iterable<string>) => this.forgetModules(aliases),
      forgetRealm: (prefix: string) => this.forgetRealm(prefix),
      forgetAll: () => this.forgetAll(),
    };
    this.runner = new ComputationRunner({
      options,
      source,
      repository,
      generations: this.generations,
      realms: this.realms,
      urls: this.urls,
      shutdown: this.shutdown.signal,
      stats: this.counters,
      emit: (event) => this.emit(event),
      lookupDependency: (url, scope, waiter) => this.resolveInScope(this.context(url), scope, performance.now(), waiter),
      cachedByAlias: (aliases, scope) => this.cachedByAlias(aliases, scope),
      coordinator,
      remember: (urls, resolved) => urls.forEach((u) => this.memory.set(u, resolved.entry.scope, resolved)),
      forgetStale: forget.forgetModules,
      tableHit: (ctx, started) => this.countTableHit(ctx, started),
    });
    this.invalidator = new Invalidator({
      options,
      repository,
      realms: this.realms,
      urls: this.urls,
      origin,
      membership,
      stats: this.counters,
      logger: this.logger,
      emit: (event) => this.emit(event),
      ...forget,
    });
    this.subscription = listener
      ? subscribeToInvalidations(listener, {
          origin,
          realms: this.realms,
          urls: this.urls,
          logger: this.logger,
          received: () => this.counters.notifications.received++,
          emit: (event) => this.emit(event),
          // Everything delivered before a peer's sync marker has been applied: say so.
          ...(membership ? { acknowledge: (seq: string, token: string) => membership.acknowledge(seq, token) } : {}),
          ...forget,
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
    // Leaving at once: strong invalidations stop waiting for this process.
    await this.membership?.leave();
  }

  onApplicationShutdown(): void {
    this.events.complete();
  }

  /** Starts serving a realm (each process registers its own); lookups, invalidations and broadcasts then cover it. */
  registerRealm(realmURL: string): void {
    const realm = canonicalRealmURL(realmURL);
    if (!this.realms.register(realm)) return;
    this.contexts.clear();
    this.logger.log(`realm registered: ${realm}`);
  }

  /** Stops serving a realm here: its lookups fail with UnknownRealmError, its entries leave memory. Rows stay (peers may serve it). */
  unregisterRealm(realmURL: string): void {
    const realm = canonicalRealmURL(realmURL);
    if (!this.realms.unregister(realm)) return;
    this.contexts.clear();
    this.generations.bumpRealm(realm);
    this.memory.evictRealm(realm, { exact: true });
    this.flights.drop((f) => f.realm === realm);
    this.logger.log(`realm unregistered: ${realm}`);
  }

  /** The entry from memory, else the table, else computed and persisted; undefined when no candidate exists. */
  lookup(moduleURL: string, options?: LookupOptions): Promise<ModuleCacheEntry | undefined> {
    // The hot path: a URL seen before, a scope known without waiting, an entry in (trusted) memory.
    // No parsing, no allocation but the promise.
    const ctx = this.contexts.get(moduleURL);
    if (ctx !== undefined) {
      // Only where lookupScope() could only say 'public': no explicit scope, no scopeFor (with or without options).
      const scope = options?.scope === undefined && options?.user === undefined && !this.options.scopeFor ? PUBLIC_SCOPE : undefined;
      if (scope !== undefined && this.memoryTrusted()) {
        const record = this.memory.getByKey(ctx.publicKey, this.options.errorTtlMs);
        if (record !== undefined) {
          this.countMemoryHit(ctx, scope, undefined);
          return Promise.resolve(record.entry);
        }
      }
    }
    return this.lookupResolved(moduleURL, options ?? {});
  }

  private async lookupResolved(moduleURL: string, options: LookupOptions): Promise<ModuleCacheEntry | undefined> {
    const started = performance.now();
    const ctx = this.context(moduleURL);
    const scope = lookupScope(ctx.realm, options, this.options.scopeFor);
    return (await this.resolveInScope(ctx, typeof scope === 'string' ? scope : await scope, started))?.entry;
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
    return (await this.lookupMany([moduleURL], options)).get(moduleURL);
  }

  /** Cached entries of many URLs: memory first, then one query per scope for the rest (filling memory). */
  async lookupMany(moduleURLs: string[], options: LookupOptions = {}): Promise<Map<string, ModuleCacheEntry | undefined>> {
    if (!Array.isArray(moduleURLs)) {
      throw new InvalidModuleURLError(messages.moduleURLsNotArray(moduleURLs === null ? 'null' : `a ${typeof moduleURLs}`));
    }
    const started = performance.now();
    const result = new Map<string, ModuleCacheEntry | undefined>();
    const pending = new Map<string, LookupContext[]>();
    for (const input of moduleURLs) {
      const ctx = { ...this.context(input), input };
      const scope = await lookupScope(ctx.realm, options, this.options.scopeFor);
      const hit = this.memoryHit(ctx, scope, started);
      if (hit) result.set(input, hit.entry);
      else pending.set(scope, [...(pending.get(scope) ?? []), ctx]);
    }
    for (const [scope, contexts] of pending) {
      // Taken before the read: a row read while an invalidation commits must not reach memory.
      const snapshots = contexts.map((ctx) => this.generations.snapshot(ctx.realm, ctx.alias));
      try {
        const { rows, watermark } = await this.repository.readMany(
          [...new Set(contexts.flatMap((c) => c.candidates))],
          scope,
          this.options.errorTtlMs,
        );
        const byURL = new Map(rows.map((r) => [r.url, r]));
        contexts.forEach((ctx, i) => {
          const row = ctx.candidates.map((c) => byURL.get(c)).find((r) => r !== undefined);
          result.set(ctx.input!, row ? this.servedFromTable(ctx, row, watermark, snapshots[i], started).entry : undefined);
        });
      } finally {
        snapshots.forEach((s) => this.generations.release(s));
      }
    }
    return result;
  }

  /**
   * Invalidates the module, its URL variants and every transitive consumer (all scopes); returns
   * the URLs invalidated (`[]` for a URL outside every registered realm, as the seed does).
   */
  invalidate(moduleURL: string): Promise<string[]> {
    return this.invalidator.invalidate(moduleURL);
  }

  /** Clears the rows of a realm prefix (registered or not, nested realms included), here and in every peer. Returns the rows deleted. */
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
      ...(this.membership ? { membership: this.membership.summary() } : {}),
    });
  }

  // ---- local effects of invalidations (own, remote, or learnt from the database) --------

  /** Synchronously bumps, drops doomed in-flight computations and evicts memory for these aliases. */
  private forgetModules(aliases: Iterable<string>): void {
    const set = new Set(aliases);
    for (const alias of set) {
      this.generations.bumpModule(alias);
      this.memory.evictAlias(alias);
    }
    this.flights.drop((f) => set.has(f.alias));
  }

  /** `prefix`: a realm, or any URL prefix ending in "/": every registered realm under it is forgotten. */
  private forgetRealm(prefix: string): void {
    for (const realm of this.realms.all) if (realm.startsWith(prefix)) this.generations.bumpRealm(realm);
    this.memory.evictRealm(prefix);
    this.flights.drop((f) => f.realm.startsWith(prefix));
  }

  private forgetAll(): void {
    this.generations.bumpGlobal();
    this.memory.clear();
    this.flights.drop(() => true);
  }

  private emit(event: ModuleCacheEvent): void {
    this.events.next(event);
  }

  // ---- resolution ----------------------------------------------------------------------

  /**
   * From memory, else a flight. A dependency lookup (`waiter` set; stored as an alias) joins a
   * local flight for any spelling of the module, so `x.ts` ↔ `x` cycles are seen and nothing is
   * computed twice; it never joins a flight that coalesces across processes, which may wait on a
   * peer's claim (two processes computing each other's imports would wait on each other). A
   * top-level lookup joins either kind.
   */
  private async resolveInScope(ctx: LookupContext, scope: string, started: number): Promise<Resolved | undefined>;
  private async resolveInScope(
    ctx: LookupContext,
    scope: string,
    started: number,
    waiter: ResolvedFlight,
  ): Promise<Resolved | undefined | typeof DEPENDENCY_CYCLE>;
  private async resolveInScope(
    ctx: LookupContext,
    scope: string,
    started: number,
    waiter?: ResolvedFlight,
  ): Promise<Resolved | undefined | typeof DEPENDENCY_CYCLE> {
    const hit = this.memoryHit(ctx, scope, started);
    if (hit) return hit;
    const coalesce = waiter === undefined;
    let flight = coalesce
      ? (this.flights.get(flightKey(ctx.realm, ctx.url, scope, { coalesce: true })) ??
        this.flights.get(flightKey(ctx.realm, ctx.url, scope, { coalesce: false })))
      : this.urls
          .variants(ctx.url)
          .map((variant) => this.flights.get(flightKey(ctx.realm, variant, scope, { coalesce: false })))
          .find((f) => f !== undefined);
    if (!flight) {
      flight = this.runner.start(flightKey(ctx.realm, ctx.url, scope, { coalesce }), { ...ctx, scope }, started, { coalesce });
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

  /** Cached entries of these aliases: memory (while trusted), then one table read for the rest. */
  private async cachedByAlias(aliases: string[], scope: string): Promise<Map<string, Resolved>> {
    const found = new Map<string, Resolved>();
    const trusted = this.memoryTrusted();
    for (const alias of aliases) {
      const record = trusted ? this.memory.getByAlias(alias, scope, this.options.errorTtlMs) : undefined;
      if (record) found.set(alias, record);
    }
    const missing = aliases.filter((a) => !found.has(a));
    if (missing.length) {
      const { rows, watermark } = await this.repository.readByAlias(missing, scope, this.options.errorTtlMs);
      for (const row of rows) {
        if (!found.has(row.alias)) found.set(row.alias, { entry: toEntry(row), alias: row.alias, realm: row.realm, watermark });
      }
    }
    return found;
  }

  /**
   * Canonical URL, its realm (none → UnknownRealmError), alias and candidates (the scope comes
   * later), kept by the caller's spelling: a URL seen before is not parsed again.
   */
  private context(moduleURL: string): CachedContext {
    let ctx = this.contexts.get(moduleURL);
    if (ctx === undefined) {
      const url = this.urls.canonical(moduleURL);
      const realm = this.realms.resolve(url);
      ctx = {
        url,
        realm,
        scope: '',
        alias: this.urls.alias(url),
        candidates: this.urls.candidates(url),
        publicKey: memoryKey(url, PUBLIC_SCOPE),
      };
      this.contexts.set(moduleURL, ctx);
    }
    return ctx;
  }

  /**
   * Memory is served only while the heartbeat proves that invalidations reach this process and,
   * with strong consistency, while its lease holds (after it, invalidators no longer wait for it).
   */
  private memoryTrusted(): boolean {
    const now = performance.now();
    return (!this.listener || this.listener.isTrusted(now)) && (!this.membership || this.membership.isTrusted(now));
  }

  private memoryHit(ctx: LookupContext, scope: string, started: number): MemoryRecord | undefined {
    if (!this.memoryTrusted()) return undefined;
    const record = this.memory.get(ctx.url, scope, this.options.errorTtlMs);
    if (record) this.countMemoryHit(ctx, scope, started);
    return record;
  }

  private countMemoryHit(ctx: LookupContext, scope: string, started: number | undefined): void {
    this.counters.hits.memory++;
    if (this.events.observed) {
      const durationMs = started === undefined ? 0 : performance.now() - started;
      this.emit({ type: 'hit', tier: 'memory', url: ctx.url, realm: ctx.realm, scope, durationMs });
    }
  }

  /** A row read outside a flight (lookupCached, lookupMany): counted, and kept in memory unless an invalidation intervened. */
  private servedFromTable(
    ctx: LookupContext,
    row: StoredRow,
    watermark: string,
    snapshot: ReturnType<Generations['snapshot']>,
    started: number,
  ): Resolved {
    const resolved: Resolved = { entry: toEntry(row), alias: row.alias, realm: row.realm, watermark };
    this.countTableHit({ ...ctx, scope: row.scope }, started);
    if (this.generations.isCurrent(snapshot)) this.memory.set(ctx.url, row.scope, resolved);
    return resolved;
  }

  private countTableHit(ctx: LookupContext, started: number): void {
    this.counters.hits.table++;
    if (this.events.observed) {
      this.emit({ type: 'hit', tier: 'table', url: ctx.url, realm: ctx.realm, scope: ctx.scope, durationMs: performance.now() - started });
    }
  }
}

function isErrorDefinition(value: unknown): value is { type: 'error'; error: { message: string } } {
  const v = value as { type?: unknown; error?: { message?: unknown } } | null;
  return typeof v === 'object' && v !== null && v.type === 'error' && typeof v.error?.message === 'string';
}
