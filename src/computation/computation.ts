import { Logger } from '@nestjs/common';
import { Coalescer, type Coalescing } from '../coalescing/coalescer';
import type { Recorder } from '../events/recorder';
import type { FencedEntry, LookupContext } from '../local/context';
import { flightKey, Flights } from '../local/flights';
import type { GenerationSnapshot } from '../local/generations';
import { FlightHints, type CallerHints } from '../local/hints';
import type { FencedFlight, LocalState } from '../local/local-state';
import type { ResolvedModuleCacheOptions } from '../config/options';
import type { EntryStore, StoredRow } from '../persistence/entries';
import type { DefinitionSource } from '../types';
import { DEPENDENCY_CYCLE, DependencyErrors } from './dependency-errors';
import { buildEntry, fencedRow } from './entry';
import { PersistStep, type Outcome } from './persist-step';
import { loadFirstCandidate } from './source-step';
import { traced } from '../events/tracing';

export { DEPENDENCY_CYCLE };

/** An attempt that did not compute: its snapshot moved before the source was called (while it waited for a claim, or read). */
type AttemptOutcome = Outcome | { done: false; moved: true };

export interface ComputationDeps {
  options: ResolvedModuleCacheOptions;
  local: LocalState;
  entries: EntryStore;
  recorder: Recorder;
  source: DefinitionSource;
  coalescer: Coalescer | null;
}

/**
 * The way to an entry past the hot path: memory, else a flight (joined or started). A flight
 * reads the table (rows come with the fence watermark they are valid as of), else coalesces
 * across processes and computes: the source, dependency errors, the entry, the persist through
 * the fence. A discarded attempt joins the key's newest flight when one is running (started after
 * this one was dropped, so from a newer snapshot), else it is retried with a new snapshot, at most
 * `maxRetries` times; when every attempt was discarded, the callers already waiting get the last
 * result anyway (neither stored nor kept in memory): churn alone never fails a lookup. An attempt
 * whose snapshot moved before it reached the source does not compute at all: it is known stale.
 */
export class Computation {
  private readonly logger = new Logger('ModuleCacheComputation');
  private readonly dependencyErrors: DependencyErrors;
  private readonly persistStep: PersistStep;
  /** One warning per 10 s while the fence stays busy, not one per lookup. */
  private fenceBusyWarnedAt = -Infinity;

  constructor(private readonly deps: ComputationDeps) {
    const { local, entries, options, recorder } = deps;
    this.dependencyErrors = new DependencyErrors(local, entries, options, (url, scope, waiter) =>
      // A dependency is computed for its consumer: at the consumer's priority, for its user, storing errors as it does.
      this.resolve(local.dependencyContext(url), scope, performance.now(), waiter.hints, waiter),
    );
    this.persistStep = new PersistStep(local, entries, recorder);
  }

  /**
   * From memory, else a flight. A dependency lookup (`waiter` set; stored as an alias) joins a
   * local flight for any spelling of the module, so `x.ts` ↔ `x` cycles are seen and nothing is
   * computed twice; it never joins a flight that coalesces across processes, which may wait on a
   * peer's claim (two processes computing each other's imports would wait on each other). A
   * top-level lookup joins either kind. A caller that joins a flight raises its priority to its
   * own when that is higher (the source hears of it through `onPriorityChange`).
   */
  resolve(ctx: LookupContext, scope: string, started: number, hints: CallerHints): Promise<FencedEntry | undefined>;
  resolve(
    ctx: LookupContext,
    scope: string,
    started: number,
    hints: CallerHints,
    waiter: FencedFlight,
  ): Promise<FencedEntry | undefined | typeof DEPENDENCY_CYCLE>;
  async resolve(
    ctx: LookupContext,
    scope: string,
    started: number,
    hints: CallerHints,
    waiter?: FencedFlight,
  ): Promise<FencedEntry | undefined | typeof DEPENDENCY_CYCLE> {
    const { local } = this.deps;
    const hit = local.memoryHit(ctx, scope, started);
    if (hit) return hit;
    const coalesce = waiter === undefined;
    let flight = this.registered(ctx.realm, ctx.url, scope, coalesce);
    if (!flight) {
      flight = this.start(flightKey(ctx.realm, ctx.url, scope, { coalesce }), { ...ctx, scope }, started, coalesce, hints);
      local.flights.add(flight);
      const registered = flight;
      flight.promise.then(
        () => local.flights.remove(registered),
        () => local.flights.remove(registered),
      );
    } else {
      flight.hints.join(hints);
    }
    if (!waiter) return flight.promise;
    if (flight === waiter || Flights.reaches(flight, waiter)) return DEPENDENCY_CYCLE;
    waiter.waitingOn.add(flight);
    try {
      return await flight.promise;
    } finally {
      waiter.waitingOn.delete(flight);
    }
  }

  /**
   * The flight a lookup of (realm, url, scope) joins now: a top-level lookup (`coalesce`) joins
   * either kind; a dependency lookup joins a local flight for any spelling of the module.
   */
  private registered(realm: string, url: string, scope: string, coalesce: boolean): FencedFlight | undefined {
    const { flights, urls } = this.deps.local;
    if (coalesce)
      return (
        flights.get(flightKey(realm, url, scope, { coalesce: true })) ?? flights.get(flightKey(realm, url, scope, { coalesce: false }))
      );
    return urls
      .variants(url)
      .map((variant) => flights.get(flightKey(realm, variant, scope, { coalesce: false })))
      .find((f) => f !== undefined);
  }

  /**
   * The key's newest flight, when it is not `flight` itself: one started after `flight` was
   * dropped by an invalidation, so from a newer snapshot. Never one that waits on `flight`
   * (joining it would deadlock).
   */
  private newerFlight(flight: FencedFlight): FencedFlight | undefined {
    const newer = this.registered(flight.realm, flight.url, flight.scope, flight.coalesce);
    if (!newer || newer === flight || Flights.reaches(newer, flight)) return undefined;
    return newer;
  }

  /** `coalesce: false` for dependency lookups: a computation never waits on a peer's claim. */
  private start(key: string, ctx: LookupContext, started: number, coalesce: boolean, hints: CallerHints): FencedFlight {
    const flight: FencedFlight = {
      key,
      realm: ctx.realm,
      url: ctx.url,
      alias: ctx.alias,
      scope: ctx.scope,
      coalesce,
      promise: Promise.resolve(undefined),
      waitingOn: new Set(),
      hints: new FlightHints(hints),
    };
    // Taken before the first await: anything that invalidates from here on is seen.
    const snapshot = this.deps.local.generations.snapshot(ctx.realm, ctx.alias);
    flight.promise = this.run(flight, ctx, snapshot, started);
    return flight;
  }

  /** The attempts and their outcomes. */
  private async run(
    flight: FencedFlight,
    ctx: LookupContext,
    first: GenerationSnapshot,
    started: number,
  ): Promise<FencedEntry | undefined> {
    const { local, recorder, options } = this.deps;
    const where = { url: ctx.url, realm: ctx.realm, scope: ctx.scope };
    let snapshot = first;
    for (let attempt = 1; ; attempt++) {
      let outcome: AttemptOutcome;
      try {
        outcome = await this.attempt(flight, ctx, snapshot, attempt, started);
      } finally {
        local.generations.release(snapshot);
      }
      if (outcome.done) return outcome.fenced;
      if (!('moved' in outcome)) recorder.record({ type: 'discarded', reason: outcome.reason, attempt, ...where });
      if (!('moved' in outcome) && outcome.reason === 'fence-busy') {
        // Waiting longer would stall this lookup behind someone else's invalidation: serve it now.
        this.warnFenceBusy(ctx);
        recorder.record({ type: 'served-unpersisted', reason: outcome.reason, attempts: attempt, ...where });
        return { ...outcome.last, unpersisted: true };
      }
      // One computation per key, through retries: a newer flight of the key is already running.
      const newer = this.newerFlight(flight);
      if (newer) {
        this.logger.debug(`${ctx.url} (${ctx.scope}): invalidated meanwhile, joining the newer computation`);
        // Its callers' priority and "store errors" carry over to the computation they now wait on.
        newer.hints.join(flight.hints);
        flight.waitingOn.add(newer);
        try {
          return await newer.promise;
        } finally {
          flight.waitingOn.delete(newer);
        }
      }
      if ('moved' in outcome) {
        this.logger.debug(`${ctx.url} (${ctx.scope}): invalidated before it was computed, reading again`);
      } else if (attempt > options.maxRetries) {
        this.logger.warn(
          `${ctx.url} (${ctx.scope}) was invalidated during each of ${attempt} computations: serving the last result to the ` +
            `callers already waiting, neither stored nor kept in memory (maxRetries = ${options.maxRetries})`,
        );
        recorder.record({ type: 'served-unpersisted', reason: outcome.reason, attempts: attempt, ...where });
        return { ...outcome.last, unpersisted: true };
      } else {
        this.logger.debug(`${ctx.url} (${ctx.scope}): computation discarded (${outcome.reason}), retrying`);
      }
      snapshot = local.generations.snapshot(ctx.realm, ctx.alias);
    }
  }

  private warnFenceBusy(ctx: LookupContext): void {
    const now = performance.now();
    if (now - this.fenceBusyWarnedAt < 10_000) return;
    this.fenceBusyWarnedAt = now;
    this.logger.warn(
      `${ctx.url} (${ctx.scope}): the fence stayed busy for fenceWaitMs = ${this.deps.options.fenceWaitMs} ms (an invalidation ` +
        `of the same modules, or a clear, is in flight): serving the result unpersisted (stats().fenceBusy counts these)`,
    );
  }

  /** One attempt: the table, else a claim (or a peer's result), else a computation. */
  private async attempt(
    flight: FencedFlight,
    ctx: LookupContext,
    snapshot: GenerationSnapshot,
    attempt: number,
    started: number,
  ): Promise<AttemptOutcome> {
    const { entries, recorder, coalescer, local, options } = this.deps;
    const where = { url: ctx.url, realm: ctx.realm, scope: ctx.scope };
    const read = () => entries.read({ candidates: ctx.candidates, scope: ctx.scope });
    const first = await read();
    if (first.row) {
      const outcome = this.serveRow(first.row, first.watermark, ctx, snapshot);
      if (outcome.done) recorder.hit('table', where, started);
      return outcome;
    }
    if (attempt === 1) recorder.record({ type: 'miss', ...where, durationMs: performance.now() - started });
    const coordination: Coalescing =
      flight.coalesce && coalescer
        ? await traced(
            'claimWait',
            () => ({ url: ctx.url, key: flight.key }),
            () => coalescer.coordinate(Coalescer.keyOf(flight.key), read, ctx.url, local.shutdown),
          )
        : { kind: 'alone' };
    if (coordination.kind === 'row') {
      recorder.record({ type: 'coalesced', ...where, woken: coordination.woken, durationMs: performance.now() - started });
      return this.serveRow(coordination.row, coordination.watermark, ctx, snapshot);
    }
    // The miss was read under this watermark: the source runs after it, so whatever it reads is
    // at least as new, and every invalidation it could have missed has a higher sequence.
    const watermark = coordination.kind === 'claimed' ? coordination.watermark : first.watermark;
    try {
      // Invalidated while it waited for the claim (or read): what it would compute is known stale.
      // It lets go of the claim, and joins the key's newest flight or reads again (within the
      // retry budget: past it, it computes, so churn cannot keep it from ever computing).
      if (attempt <= options.maxRetries && !local.generations.isCurrent(snapshot)) return { done: false, moved: true };
      return await this.compute(flight, ctx, snapshot, attempt, watermark);
    } finally {
      if (coordination.kind === 'claimed') coalescer!.release(coordination.key);
    }
  }

  private serveRow(row: StoredRow, watermark: string, ctx: LookupContext, snapshot: GenerationSnapshot): Outcome {
    const fenced = fencedRow(row, watermark);
    // The row may belong to an invalidation that just committed: read again rather than serve it.
    if (!this.deps.local.generations.isCurrent(snapshot)) return { done: false, reason: 'invalidated-locally', last: fenced };
    this.deps.local.remember([ctx.url], fenced);
    return { done: true, fenced };
  }

  /** The steps: the source, dependency errors, the entry, the persist (or discard). */
  private async compute(
    flight: FencedFlight,
    ctx: LookupContext,
    snapshot: GenerationSnapshot,
    attempt: number,
    watermark: string,
  ): Promise<Outcome> {
    const { source, local, recorder, options } = this.deps;
    const found = await loadFirstCandidate(source, ctx, local.urls, recorder, {
      timeoutMs: options.sourceTimeoutMs,
      shutdown: local.shutdown,
      hints: flight.hints,
    });
    if (!found) return { done: true, fenced: undefined };
    const { error, incorporated } = await this.dependencyErrors.attach(flight, ctx, found);
    recorder.record({
      type: 'computed',
      url: found.candidate,
      realm: ctx.realm,
      scope: ctx.scope,
      attempt,
      durationMs: performance.now() - found.computeStarted,
      ...(error ? { error: error.message } : {}),
    });
    const built = buildEntry(found.candidate, ctx, found.alias, found.loaded, found.deps, error, {
      computeStarted: found.computeStarted,
      attempt,
    });
    return this.persistStep.persist(ctx, snapshot, built, error, watermark, incorporated, flight.hints);
  }
}
