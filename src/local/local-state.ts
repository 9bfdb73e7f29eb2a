import { Logger } from '@nestjs/common';
import { setMaxListeners } from 'node:events';
import { LRUCache } from 'lru-cache';
import type { Recorder } from '../events/recorder';
import type { ResolvedModuleCacheOptions } from '../config/options';
import { PUBLIC_SCOPE } from '../types';
import type { FencedEntry, LookupContext } from './context';
import { Flights, type Flight } from './flights';
import { Generations } from './generations';
import type { FlightHints } from './hints';
import { memoryKey, MemoryTier, type MemoryRecord } from './memory-tier';
import { MAX_EXPLICIT_REALMS, parseRealmURL, RealmRegistry, UrlResolver } from '../config/urls';
import { ModuleOutsideRealmError } from '../errors';
import { urlHash } from '../persistence/entries';
import type { FenceLogRow } from '../persistence/invalidations';

const CONTEXT_CACHE_SIZE = 10_000;

/**
 * A context as kept by the caller's spelling of the URL (and of the realm it was looked up in),
 * with its public memory key computed once.
 */
export type CachedContext = LookupContext & { publicKey: string; explicitRealm?: string };

/** A flight of the lookup, with what its callers asked for (priority, user). */
export type FencedFlight = Flight<FencedEntry | undefined> & { readonly hints: FlightHints };

/** Something that can say whether this process hears every invalidation right now (the listener, strong mode's lease). */
export interface TrustSource {
  isTrusted(now: number): boolean;
}

/**
 * Everything one process knows locally: the realms it serves, its URL rules, the memory tier,
 * the generation counters, the computations in flight, and whether its memory can be trusted.
 * The local effect of every invalidation (own, a peer's, or learnt from the database) is one
 * of the three `forget` methods; they are synchronous, so they run before any await.
 */
export class LocalState {
  private readonly logger = new Logger('ModuleCacheLocalState');
  readonly realms: RealmRegistry;
  readonly urls: UrlResolver;
  readonly memory: MemoryTier;
  readonly generations = new Generations();
  readonly flights = new Flights<FencedEntry | undefined, FencedFlight>();
  private readonly closing = new AbortController();
  /** Aborted at shutdown: every source call listens on it for its duration. */
  readonly shutdown: AbortSignal = this.closing.signal;
  /** Contexts by the caller's spelling of the URL (bounded; cleared when realms change, which changes them). */
  private readonly contexts = new LRUCache<string, CachedContext>({ max: CONTEXT_CACHE_SIZE });

  constructor(
    private readonly options: ResolvedModuleCacheOptions,
    private readonly recorder: Recorder,
    private readonly trust: readonly TrustSource[],
  ) {
    // Every source call listens on it for the call's duration (and lets go): more than ten at once is normal.
    setMaxListeners(0, this.shutdown);
    this.realms = new RealmRegistry(options.realms);
    this.urls = new UrlResolver(options.extensions, options.prefixes);
    this.memory = new MemoryTier(options.memory === false ? false : options.memory.maxEntries);
  }

  /**
   * Canonical URL, its realm (none → UnknownRealmError), alias and candidates (the scope comes
   * later), kept by the caller's spelling: a URL seen before is not parsed again.
   */
  context(moduleURL: string, realmURL?: string): CachedContext {
    if (realmURL !== undefined) return this.explicitContext(moduleURL, realmURL);
    let ctx = this.contexts.get(moduleURL);
    if (ctx === undefined) {
      const url = this.urls.canonical(moduleURL);
      const realm = this.realms.realmOf(url);
      ctx = this.newContext(url, realm);
      this.contexts.set(moduleURL, ctx);
    }
    return ctx;
  }

  /**
   * The context of a lookup in a realm named by the caller (`LookupOptions.realmURL`), registered
   * here or not: the URL must lie inside it (ModuleOutsideRealmError), and it belongs to the longest
   * registered realm nested inside that one, if any, else to that realm, as it would in a process that
   * registered both. The realm is noted as used (synchronously, before the lookup's first await), so
   * that invalidations of it reach this process's memory and computations from then on.
   */
  private explicitContext(moduleURL: string, realmURL: string): CachedContext {
    const key = `${realmURL}\u0000${moduleURL}`;
    let ctx = this.contexts.get(key);
    if (ctx === undefined) {
      const explicitRealm = parseRealmURL(realmURL);
      const url = this.urls.canonical(moduleURL);
      if (!url.startsWith(explicitRealm)) throw new ModuleOutsideRealmError(url, explicitRealm);
      const registered = this.realms.find(url);
      const realm = registered !== undefined && registered.length > explicitRealm.length ? registered : explicitRealm;
      ctx = { ...this.newContext(url, realm), explicitRealm };
      this.contexts.set(key, ctx);
    }
    this.useRealm(ctx.explicitRealm!);
    return ctx;
  }

  /**
   * A dependency's context: in its registered realm, else in a realm this process used explicitly
   * (a dependency of a module looked up with `realmURL`), else UnknownRealmError.
   */
  dependencyContext(url: string): CachedContext {
    if (this.realms.find(url) !== undefined) return this.context(url);
    const used = this.realms.findKnown(url);
    return used === undefined ? this.context(url) : this.context(url, used);
  }

  private newContext(url: string, realm: string): CachedContext {
    return {
      url,
      realm,
      scope: '',
      alias: this.urls.alias(url),
      candidates: this.urls.candidates(url),
      publicKey: memoryKey(url, PUBLIC_SCOPE),
    };
  }

  /** Notes a realm as used; one pushed out of the bounded list is forgotten here as if unregistered. */
  private useRealm(realm: string): void {
    const dropped = this.realms.use(realm);
    if (dropped === undefined) return;
    this.forgetOwnRealm(dropped);
    this.logger.log(`realm ${dropped}: no longer used explicitly here (more than ${MAX_EXPLICIT_REALMS} realms were), forgotten`);
  }

  /** A context seen before, without parsing (the hot path). */
  knownContext(moduleURL: string): CachedContext | undefined {
    return this.contexts.get(moduleURL);
  }

  /**
   * Memory is served only while the heartbeat proves that invalidations reach this process and,
   * with strong consistency, while its lease holds (after it, invalidators no longer wait for it).
   */
  isTrusted(): boolean {
    if (this.trust.length === 0) return true;
    const now = performance.now();
    return this.trust.every((t) => t.isTrusted(now));
  }

  /** The entry of (url, scope) in trusted memory, counted and reported as a memory hit. */
  memoryHit(ctx: LookupContext, scope: string, started: number | undefined): MemoryRecord | undefined {
    if (!this.isTrusted()) return undefined;
    const record = this.memory.get(ctx.url, scope, this.options.errorTtlMs);
    if (record) this.recorder.hit('memory', { url: ctx.url, realm: ctx.realm, scope }, started);
    return record;
  }

  /** The same by the public key of a context seen before (the hot path: no parsing, no allocation). */
  publicMemoryHit(ctx: CachedContext): MemoryRecord | undefined {
    if (!this.isTrusted()) return undefined;
    const record = this.memory.getByKey(ctx.publicKey, this.options.errorTtlMs);
    if (record) this.recorder.hit('memory', { url: ctx.url, realm: ctx.realm, scope: PUBLIC_SCOPE }, undefined);
    return record;
  }

  /** Keeps an entry in the memory tier under each of `urls`. */
  remember(urls: Iterable<string>, fenced: FencedEntry): void {
    for (const url of urls) this.memory.set(url, fenced.entry.scope, fenced);
  }

  /** Synchronously bumps, drops doomed in-flight computations and evicts memory for these aliases. */
  forgetModules(aliases: Iterable<string>): void {
    const set = new Set(aliases);
    for (const alias of set) {
      this.generations.bumpModule(alias);
      this.memory.evictAlias(alias);
    }
    this.flights.drop((f) => set.has(f.alias));
  }

  /** `prefix`: a realm, or any URL prefix ending in "/": every registered realm under it is forgotten. */
  forgetRealm(prefix: string): void {
    for (const realm of this.realms.known) if (realm.startsWith(prefix)) this.generations.bumpRealm(realm);
    this.memory.evictRealm(prefix);
    this.flights.drop((f) => f.realm.startsWith(prefix));
  }

  forgetAll(): void {
    this.generations.bumpGlobal();
    this.memory.clear();
    this.flights.drop(() => true);
  }

  /**
   * The local effect of fence-log rows a reconnect replayed: a global row forgets everything; a
   * realm row, that realm prefix; a module row names aliases by hash (`urlHash`), so the aliases
   * this process holds anything for — memory entries, watched generations, flights — are hashed
   * and those that match are forgotten. Returns the memory entries evicted.
   */
  forgetFenceLogRows(rows: readonly FenceLogRow[]): number {
    const before = this.memory.size;
    if (rows.some((r) => r.kind === 'global')) {
      this.forgetAll();
      return before;
    }
    const hashes = new Set<string>();
    for (const row of rows) {
      if (row.kind === 'realm') this.forgetRealm(row.realm);
      else if (row.kind === 'module') for (const h of row.aliasHashes) hashes.add(h.toLowerCase());
    }
    if (hashes.size > 0) {
      const held = new Set<string>([
        ...this.memory.aliases(),
        ...this.generations.watchedAliases(),
        ...this.flights.all().map((f) => f.alias),
      ]);
      this.forgetModules([...held].filter((alias) => hashes.has(urlHash(alias))));
    }
    return before - this.memory.size;
  }

  /** Starts serving a realm (each process registers its own); lookups, invalidations and broadcasts then cover it. */
  registerRealm(realmURL: string): void {
    const realm = parseRealmURL(realmURL);
    if (!this.realms.register(realm)) return;
    this.contexts.clear();
    this.logger.log(`realm registered: ${realm}`);
  }

  /** Stops serving a realm here: its lookups fail with UnknownRealmError, its entries leave memory. Rows stay (peers may serve it). */
  unregisterRealm(realmURL: string): void {
    const realm = parseRealmURL(realmURL);
    if (!this.realms.unregister(realm)) return;
    this.contexts.clear();
    this.forgetOwnRealm(realm);
    this.logger.log(`realm unregistered: ${realm}`);
  }

  /** This process stops serving a realm: what it keeps of it goes (its rows stay). */
  private forgetOwnRealm(realm: string): void {
    this.generations.bumpRealm(realm);
    this.memory.evictRealm(realm, { exact: true });
    this.flights.drop((f) => f.realm === realm);
  }

  /** Shutdown: every source call in flight is aborted. */
  close(): void {
    this.closing.abort();
  }
}
