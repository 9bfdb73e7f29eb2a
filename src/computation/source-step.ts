import { Logger } from '@nestjs/common';
import { DefinitionSourceError, DefinitionSourceTimeoutError, ModuleCacheShutdownError } from '../errors';
import type { Recorder } from '../events/recorder';
import type { LookupContext } from '../local/context';
import type { UrlResolver } from '../config/urls';
import { messages } from '../messages';
import { deadline } from '../timeout';
import { DEFAULT_PRIORITY, type DefinitionSource, type DefinitionSourceContext, type LoadedModule } from '../types';
import { FlightHints } from '../local/hints';
import { describeError } from '../describe-error';
import { traced } from '../events/tracing';

const logger = new Logger('ModuleCacheComputation');

/** A module the source found at a candidate URL, with its dependencies resolved and alias-normalised. */
export interface SourceResult {
  candidate: string;
  alias: string;
  loaded: LoadedModule;
  /** Canonical, alias-normalised, without the module itself. */
  deps: string[];
  computeStarted: number;
}

/**
 * The first candidate the source finds (an extensionless URL tries each extension, then itself;
 * `null` moves on), or undefined when none exists. A source that throws or times out fails the
 * computation (counted, never cached).
 */
export async function loadFirstCandidate(
  source: DefinitionSource,
  ctx: LookupContext,
  urls: UrlResolver,
  recorder: Recorder,
  { timeoutMs, shutdown, hints }: { timeoutMs: number; shutdown: AbortSignal; hints: FlightHints },
): Promise<SourceResult | undefined> {
  for (const candidate of ctx.candidates) {
    const computeStarted = performance.now();
    let loaded: LoadedModule | null;
    try {
      loaded = await traced(
        'computation',
        () => ({ url: candidate, realm: ctx.realm, scope: ctx.scope }),
        () => callSource(source, candidate, { realmURL: ctx.realm, scope: ctx.scope, timeoutMs, shutdown, hints }),
      );
    } catch (error) {
      recorder.record({ type: 'source-error' });
      logger.warn(`${describeError(error)} (nothing cached)`);
      throw error;
    }
    if (loaded === null) continue;
    const alias = urls.alias(candidate);
    const deps = [...new Set(loaded.deps.map((dep) => urls.dependency(dep, candidate)).filter((d) => d !== undefined))].filter(
      (dep) => dep !== alias,
    );
    return { candidate, alias, loaded, deps, computeStarted };
  }
  return undefined;
}

/**
 * Calls the source with a timeout. The source gets an AbortSignal; a source that ignores it
 * is still abandoned at the deadline so a hung source cannot hang its callers. It also gets the
 * callers' hints (priority, user); the priority listeners it registers are dropped when the call ends.
 */
export async function callSource(
  source: DefinitionSource,
  url: string,
  context: { realmURL: string; scope: string; timeoutMs: number; shutdown: AbortSignal; hints?: FlightHints },
): Promise<LoadedModule | null> {
  // One controller per call; the shutdown listener is removed when the call ends, so the
  // long-lived shutdown signal does not collect one listener per computation.
  const controller = new AbortController();
  const { sourceContext, detach } = hintedContext(context, controller.signal);
  const timeout = deadline(context.timeoutMs, () => {
    const error = new DefinitionSourceTimeoutError(messages.sourceTimeout(url, context.timeoutMs));
    controller.abort(error);
    return error;
  });
  let onShutdown!: () => void;
  const shutdown = new Promise<never>((_, reject) => {
    onShutdown = () => {
      const error = new ModuleCacheShutdownError(messages.shuttingDown(url));
      controller.abort(error);
      reject(error);
    };
  });
  shutdown.catch(() => undefined);
  if (context.shutdown.aborted) onShutdown();
  else context.shutdown.addEventListener('abort', onShutdown, { once: true });
  try {
    const result = await Promise.race([Promise.resolve().then(() => source.load(url, sourceContext)), timeout.expired, shutdown]);
    return validateLoaded(result, url);
  } catch (error) {
    if (error instanceof DefinitionSourceError || error instanceof ModuleCacheShutdownError) throw error;
    const message = describeError(error);
    throw new DefinitionSourceError(messages.sourceFailed(url, message), { cause: error });
  } finally {
    timeout.cancel();
    context.shutdown.removeEventListener('abort', onShutdown);
    detach();
  }
}

/** The source's context: where, for whom and how urgently; `detach` drops the priority listeners the source registered. */
function hintedContext(
  { realmURL, scope, hints = new FlightHints({ priority: DEFAULT_PRIORITY }) }: { realmURL: string; scope: string; hints?: FlightHints },
  signal: AbortSignal,
): { sourceContext: DefinitionSourceContext; detach(): void } {
  const unsubscribes = new Set<() => void>();
  const sourceContext: DefinitionSourceContext = {
    realmURL,
    scope,
    signal,
    get priority() {
      return hints.priority;
    },
    ...(hints.user !== undefined ? { user: hints.user } : {}),
    onPriorityChange: (listener) => {
      const unsubscribe = hints.onPriorityChange(listener);
      unsubscribes.add(unsubscribe);
      return () => {
        unsubscribes.delete(unsubscribe);
        unsubscribe();
      };
    },
  };
  return { sourceContext, detach: () => unsubscribes.forEach((unsubscribe) => unsubscribe()) };
}

function validateLoaded(result: unknown, url: string): LoadedModule | null {
  if (result === null) return null;
  const bad = (why: string) => new DefinitionSourceError(messages.sourceInvalidResult(url, why));
  if (typeof result !== 'object' || result === undefined) throw bad(`expected an object or null, got ${typeof result}`);
  const r = result as Partial<LoadedModule>;
  if (typeof r.definitions !== 'object' || r.definitions === null || Array.isArray(r.definitions))
    throw bad('definitions must be an object');
  if (!Array.isArray(r.deps)) throw bad('deps must be an array of URLs');
  const notString = r.deps.findIndex((d) => typeof d !== 'string');
  if (notString >= 0) {
    const found = r.deps[notString] as unknown;
    throw bad(
      `deps must be an array of strings (URLs, absolute or relative to the module), found ${JSON.stringify(found) ?? String(found)}`,
    );
  }
  if (
    r.error !== undefined &&
    (typeof r.error !== 'object' || r.error === null || Array.isArray(r.error) || typeof r.error.message !== 'string')
  ) {
    throw bad('error must be an object with a string message (any other JSON fields are kept)');
  }
  // Entries keep what the source returned as a JSON round trip, the same in memory as from the table.
  const json = <T>(value: T, what: string): T => {
    try {
      return JSON.parse(JSON.stringify(value)) as T;
    } catch (error) {
      throw bad(`${what} are not JSON-serialisable (${describeError(error)})`);
    }
  };
  return {
    definitions: json(r.definitions, 'definitions'),
    deps: r.deps,
    ...(r.error ? { error: json(r.error, 'error fields') } : {}),
    ...(r.diagnostics !== undefined ? { diagnostics: json(r.diagnostics, 'diagnostics') } : {}),
  };
}
