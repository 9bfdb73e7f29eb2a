import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type BeforeApplicationShutdown,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import type { Observable } from 'rxjs';
import { ModuleCacheInvalidationListener } from '../listener/invalidation-listener';
import type { Coalescer } from '../coalescing/coalescer';
import { Computation } from '../computation/computation';
import { fencedRow } from '../computation/entry';
import type { Membership } from '../consistency/membership';
import { DefinitionNotFoundError, InvalidModuleURLError } from '../errors';
import type { ModuleCacheEvent, ModuleCacheStats } from '../events/events';
import type { Recorder } from '../events/recorder';
import { messages } from '../messages';
import {
  MODULE_CACHE_COALESCER,
  MODULE_CACHE_MEMBERSHIP,
  MODULE_CACHE_ORIGIN,
  MODULE_CACHE_RECORDER,
  MODULE_CACHE_ENTRIES,
  MODULE_CACHE_INVALIDATIONS,
  RESOLVED_DEFINITION_SOURCE,
  RESOLVED_MODULE_CACHE_OPTIONS,
} from '../module-cache.constants';
import type { ResolvedModuleCacheOptions } from '../config/options';
import type { EntryStore } from '../persistence/entries';
import type { InvalidationStore } from '../persistence/invalidations';
import type { DefinitionSource, LookupOptions, ModuleCacheEntry, PrewarmSummary } from '../types';
import type { LookupContext } from '../local/context';
import { Invalidator } from './invalidator';
import { LocalState } from '../local/local-state';
import { Prewarmer } from './prewarm';
import { RemoteInvalidations } from './remote-invalidations';
import { callerHints } from './caller-hints';
import { lookupScope } from './scopes';
import { traced } from '../events/tracing';

/**
 * The lookup service: a facade over the process's local state (memory, generations, flights,
 * realms), the computation (table, coalescing, source, fence), the invalidator and the handler of
 * peers' invalidations. Data flows one way: lookup → (memory | table | source) → table;
 * invalidation → table (delete + notify) → every process's listener → local state.
 */
@Injectable()
export class CachingDefinitionLookup implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('CachingDefinitionLookup');
  /** Every hit, miss, computation, persist, discard, invalidation and listener change. */
  readonly events$: Observable<ModuleCacheEvent>;
  private readonly local: LocalState;
  private readonly computation: Computation;
  private readonly invalidator: Invalidator;
  private readonly remote: RemoteInvalidations | undefined;
  private readonly prewarmer: Prewarmer;

  constructor(
    @Inject(RESOLVED_MODULE_CACHE_OPTIONS) private readonly options: ResolvedModuleCacheOptions,
    @Inject(RESOLVED_DEFINITION_SOURCE) source: DefinitionSource,
    @Inject(MODULE_CACHE_ENTRIES) private readonly entries: EntryStore,
    @Inject(MODULE_CACHE_INVALIDATIONS) invalidations: InvalidationStore,
    @Inject(MODULE_CACHE_ORIGIN) readonly origin: string,
    @Inject(MODULE_CACHE_RECORDER) private readonly recorder: Recorder,
    @Optional() @Inject(ModuleCacheInvalidationListener) private readonly listener: ModuleCacheInvalidationListener | null = null,
    @Optional() @Inject(MODULE_CACHE_COALESCER) private readonly coalescer: Coalescer | null = null,
    @Optional() @Inject(MODULE_CACHE_MEMBERSHIP) private readonly membership: Membership | null = null,
  ) {
    this.events$ = recorder.events$;
    this.local = new LocalState(
      options,
      recorder,
      [listener, membership].filter((t) => t !== null),
    );
    this.computation = new Computation({ options, local: this.local, entries, recorder, source, coalescer });
    this.invalidator = new Invalidator({ options, local: this.local, invalidations, recorder, origin, membership });
    this.remote = listener ? new RemoteInvalidations(listener, this.local, recorder, origin, membership) : undefined;
    this.prewarmer = new Prewarmer({
      options,
      local: this.local,
      computation: this.computation,
      recorder,
      source,
      lookupMany: (urls, realmURL) => this.lookupMany(urls, { realmURL }),
    });
  }

  async onModuleInit(): Promise<void> {
    await this.entries.assertSchema();
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
    this.remote?.close();
    this.local.close();
    await Promise.allSettled(this.local.flights.all().map((f) => f.promise));
    await this.coalescer?.close();
    // Leaving at once: strong invalidations stop waiting for this process.
    await this.membership?.leave();
  }

  onApplicationShutdown(): void {
    this.recorder.complete();
  }

  /** Starts serving a realm (each process registers its own); lookups, invalidations and broadcasts then cover it. */
  registerRealm(realmURL: string): void {
    this.local.registerRealm(realmURL);
  }

  /** Stops serving a realm here: its lookups fail with UnknownRealmError, its entries leave memory. Rows stay (peers may serve it). */
  unregisterRealm(realmURL: string): void {
    this.local.unregisterRealm(realmURL);
  }

  /** The entry from memory, else the table, else computed and persisted; undefined when no candidate exists. */
  lookup(moduleURL: string, options?: LookupOptions): Promise<ModuleCacheEntry | undefined> {
    // The hot path: a URL seen before, in trusted memory, where lookupScope() could only say 'public'.
    // No parsing, no allocation but the promise.
    // (Options besides the scope's are validated on the slow path: a bad priority is never served.)
    if (
      options?.scope === undefined &&
      options?.user === undefined &&
      options?.priority === undefined &&
      options?.realmURL === undefined &&
      !this.options.scopeFor
    ) {
      const ctx = this.local.knownContext(moduleURL);
      const record = ctx && this.local.publicMemoryHit(ctx);
      if (record !== undefined) return Promise.resolve(record.entry);
    }
    return this.lookupInScope(moduleURL, options ?? {});
  }

  private lookupInScope(moduleURL: string, options: LookupOptions): Promise<ModuleCacheEntry | undefined> {
    return traced(
      'lookup',
      () => ({ url: moduleURL, scope: options.scope, user: options.user }),
      () => this.lookupTraced(moduleURL, options),
    );
  }

  private async lookupTraced(moduleURL: string, options: LookupOptions): Promise<ModuleCacheEntry | undefined> {
    const started = performance.now();
    const hints = callerHints(options);
    const ctx = this.local.context(moduleURL, options.realmURL);
    const scope = lookupScope(ctx.realm, options, this.options.scopeFor);
    return (await this.computation.resolve(ctx, typeof scope === 'string' ? scope : await scope, started, hints))?.entry;
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
    callerHints(options);
    const started = performance.now();
    const result = new Map<string, ModuleCacheEntry | undefined>();
    const pending = new Map<string, LookupContext[]>();
    for (const input of moduleURLs) {
      const ctx = { ...this.local.context(input, options.realmURL), input };
      const scope = await lookupScope(ctx.realm, options, this.options.scopeFor);
      const hit = this.local.memoryHit(ctx, scope, started);
      if (hit) result.set(input, hit.entry);
      else pending.set(scope, [...(pending.get(scope) ?? []), ctx]);
    }
    for (const [scope, contexts] of pending) await this.readMany(scope, contexts, result, started);
    return result;
  }

  /** One table read for `contexts` in `scope`; what it finds is counted and kept in memory unless an invalidation intervened. */
  private async readMany(
    scope: string,
    contexts: LookupContext[],
    result: Map<string, ModuleCacheEntry | undefined>,
    started: number,
  ): Promise<void> {
    const { generations } = this.local;
    // Taken before the read: a row read while an invalidation commits must not reach memory.
    const snapshots = contexts.map((ctx) => generations.snapshot(ctx.realm, ctx.alias));
    try {
      const candidates = [...new Set(contexts.flatMap((c) => c.candidates))];
      const { rows, watermark } = await this.entries.readMany({ urls: candidates, scope });
      const byURL = new Map(rows.map((r) => [r.url, r]));
      contexts.forEach((ctx, i) => {
        const row = ctx.candidates.map((c) => byURL.get(c)).find((r) => r !== undefined);
        if (!row) return void result.set(ctx.input!, undefined);
        const fenced = fencedRow(row, watermark);
        this.recorder.hit('table', { url: ctx.url, realm: ctx.realm, scope: row.scope }, started);
        if (generations.isCurrent(snapshots[i])) this.local.remember([ctx.url], fenced);
        result.set(ctx.input!, fenced.entry);
      });
    } finally {
      snapshots.forEach((s) => generations.release(s));
    }
  }

  /**
   * Computes and persists a realm's own modules ahead of their first lookup: `moduleURLs`, else what
   * the source's `listModules(realmURL)` lists (NoModuleListingError when it has none). URLs outside
   * the realm, or in a registered realm nested inside it, are skipped; dependencies are not followed.
   * At most `prewarm.concurrency` at once, at LOWEST_PRIORITY; error entries are reported, never
   * stored. The realm need not be registered here (as with `LookupOptions.realmURL`). Progress goes
   * to `events$` (`prewarm-progress`, `prewarm-finished`).
   */
  prewarm(realmURL: string, moduleURLs?: readonly string[]): Promise<PrewarmSummary> {
    return this.prewarmer.prewarm(realmURL, moduleURLs);
  }

  /**
   * Invalidates the module, its URL variants and every transitive consumer (all scopes); returns
   * the URLs invalidated (`[]` for a URL outside every registered realm, as the reference does).
   */
  invalidate(moduleURL: string): Promise<string[]> {
    return traced(
      'invalidation',
      () => ({ kind: 'module', urls: [moduleURL] }),
      () => this.invalidator.invalidate(moduleURL),
    );
  }

  /**
   * invalidate() of many URLs in one transaction (one fan-out, one delete, one fence-log row,
   * payloads per realm); returns the union of the URLs invalidated. An invalid URL rejects the
   * whole call before anything happens; URLs outside every registered realm are skipped.
   */
  invalidateMany(moduleURLs: string[]): Promise<string[]> {
    return traced(
      'invalidation',
      () => ({ kind: 'module', urls: moduleURLs }),
      () => this.invalidator.invalidateMany(moduleURLs),
    );
  }

  /** Clears the rows of a realm prefix (registered or not, nested realms included), here and in every peer. Returns the rows deleted. */
  clearRealm(realmURL: string): Promise<number> {
    return traced(
      'invalidation',
      () => ({ kind: 'realm', realm: realmURL }),
      () => this.invalidator.clearRealm(realmURL),
    );
  }

  /** Clears everything, here and in every peer. Returns the rows deleted. */
  clearAll(): Promise<number> {
    return traced(
      'invalidation',
      () => ({ kind: 'global' }),
      () => this.invalidator.clearAll(),
    );
  }

  stats(): ModuleCacheStats {
    const listener = this.listener?.stats();
    const counters = this.recorder.counters();
    return {
      ...counters,
      notifications: { ...counters.notifications, rejected: listener?.rejected ?? 0 },
      reconnects: listener?.reconnects ?? 0,
      inFlight: this.local.flights.size,
      memoryEntries: this.local.memory.size,
      trackedGenerations: this.local.generations.trackedModules,
      ...(this.membership ? { membership: this.membership.summary() } : {}),
    };
  }

  /** The local effect of invalidating these aliases (benchmarks and tests drive it directly). */
  private forgetModules(aliases: Iterable<string>): void {
    this.local.forgetModules(aliases);
  }
}

function isErrorDefinition(value: unknown): value is { type: 'error'; error: { message: string } } {
  const v = value as { type?: unknown; error?: { message?: unknown } } | null;
  return typeof v === 'object' && v !== null && v.type === 'error' && typeof v.error?.message === 'string';
}
