import type { DiscardReason } from '../events/events';
import type { Recorder } from '../events/recorder';
import type { FencedEntry, LookupContext } from '../local/context';
import type { GenerationSnapshot } from '../local/generations';
import type { LocalState } from '../local/local-state';
import type { EntryStore } from '../persistence/entries';
import type { ModuleError } from '../types';
import type { Incorporated } from './dependency-errors';
import type { BuiltEntry } from './entry';
import { traced } from '../events/tracing';

/** How one attempt ended: with a result to serve, or discarded (and why), with what it had built. */
export type Outcome = { done: true; fenced: FencedEntry | undefined } | { done: false; reason: DiscardReason; last: FencedEntry };

/**
 * Persists a computed entry through the fence, or discards it: when this process invalidated the
 * module meanwhile, when it was built on a result that could not be stored itself, or when the
 * database refuses it (something it was built from was invalidated after its watermark — what the
 * database knows to be stale, this process may not have heard of yet, so it forgets that too).
 */
export class PersistStep {
  constructor(
    private readonly local: LocalState,
    private readonly entries: EntryStore,
    private readonly recorder: Recorder,
  ) {}

  async persist(
    ctx: LookupContext,
    snapshot: GenerationSnapshot,
    built: BuiltEntry,
    error: ModuleError | undefined,
    watermark: string,
    incorporated: Incorporated,
    { persistErrors }: { persistErrors: boolean },
  ): Promise<Outcome> {
    const { entry, alias, diagnostics } = built;
    const unstored: FencedEntry = { entry, alias, realm: ctx.realm, watermark };
    if (!this.local.generations.isCurrent(snapshot)) return { done: false, reason: 'invalidated-locally', last: unstored };
    if (incorporated.unpersisted) return { done: false, reason: 'stale-dependency', last: unstored };
    // prewarm(): a failure during warm-up may be transient; stored, it would be served for errorTtlMs.
    // Not kept in memory either, so that the next lookup computes it.
    if (error && !persistErrors) return { done: true, fenced: { ...unstored, unpersisted: true } };
    const persistStarted = performance.now();
    const persisted = await traced(
      'persist',
      () => ({ url: entry.url, realm: ctx.realm, scope: ctx.scope }),
      () =>
        this.entries.persist({
          row: {
            url: entry.url,
            scope: ctx.scope,
            alias,
            realm: ctx.realm,
            definitions: entry.definitions,
            deps: entry.deps,
            error,
            diagnostics,
          },
          watermark,
          parts: incorporated.parts,
        }),
    );
    if (persisted.status === 'busy') {
      this.recorder.record({ type: 'fence-busy', what: 'persist' });
      return { done: false, reason: 'fence-busy', last: unstored };
    }
    if (persisted.status !== 'persisted') {
      this.local.forgetModules(persisted.stale.filter((a) => a !== alias));
      return { done: false, reason: persisted.status === 'expired' ? 'fence-expired' : 'fenced-by-database', last: unstored };
    }
    this.recorder.record({
      type: 'persisted',
      url: entry.url,
      realm: ctx.realm,
      scope: ctx.scope,
      durationMs: performance.now() - persistStarted,
    });
    const fenced: FencedEntry = { ...unstored, entry: { ...entry, createdAt: persisted.createdAt }, watermark: persisted.watermark };
    if (this.local.generations.isCurrent(snapshot)) this.local.remember(new Set([ctx.url, entry.url]), fenced);
    return { done: true, fenced };
  }
}
