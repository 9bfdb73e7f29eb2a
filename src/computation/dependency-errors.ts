import type { FencedEntry, LookupContext } from '../local/context';
import type { FencedFlight, LocalState } from '../local/local-state';
import type { ResolvedModuleCacheOptions } from '../config/options';
import type { EntryStore, FencePart } from '../persistence/entries';
import type { ModuleError } from '../types';
import { fencedRow } from './entry';
import { clampErrorDocument, withCachedDependencyErrors, withComputedDependencyErrors } from './error-documents';
import type { SourceResult } from './source-step';

/** Dependency lookups of one computation that run at once (`dependencyErrors: 'compute'`). */
const DEPENDENCY_CONCURRENCY = 8;

export const DEPENDENCY_CYCLE = Symbol('dependency-cycle');

/** Looks a dependency up as a waiter of `flight` (computing it if needed); DEPENDENCY_CYCLE when that would wait on itself. */
export type DependencyLookup = (
  url: string,
  scope: string,
  waiter: FencedFlight,
) => Promise<FencedEntry | undefined | typeof DEPENDENCY_CYCLE>;

/** The cached entries a computation built on, for the fence; and whether one of them could not be stored itself. */
export interface Incorporated {
  parts: FencePart[];
  unpersisted: boolean;
}

/**
 * The error document of a computed module with its dependencies' errors attached the way the
 * `dependencyErrors` option says, clamped to `maxErrorBytes`, and every cached entry that went
 * into it. Dependencies are looked up in the module's own scope only: another user's entries
 * never reach it.
 */
export class DependencyErrors {
  constructor(
    private readonly local: LocalState,
    private readonly entries: EntryStore,
    private readonly options: ResolvedModuleCacheOptions,
    private readonly lookupDependency: DependencyLookup,
  ) {}

  async attach(
    flight: FencedFlight,
    ctx: LookupContext,
    found: SourceResult,
  ): Promise<{ error: ModuleError | undefined; incorporated: Incorporated }> {
    const { loaded, candidate, deps } = found;
    const urls = this.local.urls;
    let error: ModuleError | undefined;
    let incorporated: Incorporated = { parts: [], unpersisted: false };
    if (this.options.dependencyErrors === 'compute') {
      // Looked up as written (`./x.ts`), not by alias: one candidate, not one per extension.
      const written = loaded.deps.map((d) => urls.dependencyURL(d, candidate)).filter((d) => d !== undefined);
      const byAlias = new Map(written.map((d) => [urls.alias(d), d]));
      const computed = await this.computed(
        flight,
        deps.map((alias) => byAlias.get(alias) ?? alias),
        ctx.scope,
      );
      incorporated = computed;
      error = withComputedDependencyErrors(candidate, loaded.error, computed.errors);
    } else if (loaded.error) {
      const ownDeps = Array.isArray(loaded.error.deps) ? loaded.error.deps.map((d) => urls.dependency(d, candidate)) : [];
      const cached = await this.cached([...deps, ...ownDeps.filter((d) => d !== undefined)], ctx.scope);
      incorporated = cached;
      error = withCachedDependencyErrors(loaded.error, cached.errors);
    }
    return { error: error ? clampErrorDocument(error, this.options.maxErrorBytes) : undefined, incorporated };
  }

  /**
   * `'compute'`: errors of the module's dependencies inside known realms (registered or used explicitly; looked up, so
   * computed if needed; at most DEPENDENCY_CONCURRENCY at once), and every cached entry that went
   * into them. Only modules' own errors and "not found" are errors: a dependency lookup that fails
   * (the source threw, a timeout, the database, shutdown) fails this one too.
   */
  private async computed(flight: FencedFlight, deps: string[], scope: string): Promise<Incorporated & { errors: ModuleError[] }> {
    const inRealm = deps.filter((dep) => this.local.realms.findKnown(dep) !== undefined);
    const found: Array<FencedEntry | undefined | typeof DEPENDENCY_CYCLE> = [];
    for (let i = 0; i < inRealm.length; i += DEPENDENCY_CONCURRENCY) {
      found.push(
        ...(await Promise.all(inRealm.slice(i, i + DEPENDENCY_CONCURRENCY).map((dep) => this.lookupDependency(dep, scope, flight)))),
      );
    }
    const parts: FencePart[] = [];
    const errors: ModuleError[] = [];
    let unpersisted = false;
    found.forEach((fenced, i) => {
      if (fenced === DEPENDENCY_CYCLE) return;
      if (fenced === undefined) {
        errors.push({ message: `module not found: ${inRealm[i]}`, status: 404, url: inRealm[i] });
        return;
      }
      if (fenced.unpersisted) unpersisted = true;
      parts.push({ alias: fenced.alias, realm: fenced.realm, watermark: fenced.watermark });
      if (fenced.entry.error) errors.push({ ...fenced.entry.error, url: fenced.entry.error.url ?? fenced.entry.url });
    });
    return { errors, parts, unpersisted };
  }

  /**
   * `'cached'` (the reference's way, for a module whose own computation errored): the errors of
   * cached entries of its dependencies, and transitively of theirs, following only dependencies
   * that errored; never computing one, skipping `.json`, one read per level. Every cached entry
   * consulted — with or without an error — is a part the fence checks.
   */
  private async cached(deps: string[], scope: string): Promise<Incorporated & { errors: ModuleError[] }> {
    const eligible = (dep: string) => !dep.endsWith('.json') && this.local.realms.findKnown(dep) !== undefined;
    const seen = new Set<string>();
    const enqueue = (candidates: Iterable<string>) => [...candidates].filter((d) => eligible(d) && !seen.has(d) && seen.add(d));
    const parts: FencePart[] = [];
    const errors: ModuleError[] = [];
    for (let level = enqueue(deps); level.length > 0;) {
      const found = await this.cachedByAlias(level, scope);
      const next: string[] = [];
      for (const alias of level) {
        const fenced = found.get(alias);
        if (!fenced) continue;
        parts.push({ alias: fenced.alias, realm: fenced.realm, watermark: fenced.watermark });
        const { error, deps: theirs, url } = fenced.entry;
        if (!error) continue;
        errors.push(error);
        const declared = Array.isArray(error.deps) ? error.deps.map((d) => this.local.urls.dependency(d, url)) : [];
        next.push(...enqueue([...theirs, ...declared.filter((d) => d !== undefined)]));
      }
      level = next;
    }
    return { errors, parts, unpersisted: false };
  }

  /** Cached entries of these aliases in `scope`: memory (while trusted), then one table read for the rest. */
  private async cachedByAlias(aliases: string[], scope: string): Promise<Map<string, FencedEntry>> {
    const found = new Map<string, FencedEntry>();
    const trusted = this.local.isTrusted();
    for (const alias of aliases) {
      const record = trusted ? this.local.memory.getByAlias(alias, scope, this.options.errorTtlMs) : undefined;
      if (record) found.set(alias, record);
    }
    const missing = aliases.filter((a) => !found.has(a));
    if (missing.length) {
      const { rows, watermark } = await this.entries.readByAlias({ aliases: missing, scope });
      for (const row of rows) if (!found.has(row.alias)) found.set(row.alias, fencedRow(row, watermark));
    }
    return found;
  }
}
