import { DefinitionSourceError, DefinitionSourceTimeoutError, ModuleCacheShutdownError } from '../errors';
import { messages } from '../messages';
import { deadline } from '../timeout';
import type { DefinitionSource, LoadedModule, ModuleError } from '../types';

/**
 * Calls the source with a timeout. The source gets an AbortSignal; a source that ignores it
 * is still abandoned at the deadline so a hung source cannot hang its callers.
 */
export async function callSource(
  source: DefinitionSource,
  url: string,
  context: { realmURL: string; scope: string; timeoutMs: number; shutdown: AbortSignal },
): Promise<LoadedModule | null> {
  // One controller per call; the shutdown listener is removed when the call ends, so the
  // long-lived shutdown signal does not collect one listener per computation.
  const controller = new AbortController();
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
    const result = await Promise.race([
      Promise.resolve().then(() => source.load(url, { realmURL: context.realmURL, scope: context.scope, signal: controller.signal })),
      timeout.expired,
      shutdown,
    ]);
    return validateLoaded(result, url);
  } catch (error) {
    if (error instanceof DefinitionSourceError || error instanceof ModuleCacheShutdownError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new DefinitionSourceError(messages.sourceFailed(url, message), { cause: error });
  } finally {
    timeout.cancel();
    context.shutdown.removeEventListener('abort', onShutdown);
  }
}

function validateLoaded(result: unknown, url: string): LoadedModule | null {
  if (result === null) return null;
  const bad = (why: string) => new DefinitionSourceError(messages.sourceInvalidResult(url, why));
  if (typeof result !== 'object' || result === undefined) throw bad(`expected an object or null, got ${typeof result}`);
  const r = result as Partial<LoadedModule>;
  if (typeof r.definitions !== 'object' || r.definitions === null || Array.isArray(r.definitions))
    throw bad('definitions must be an object');
  if (!Array.isArray(r.deps)) throw bad('deps must be an array of URLs');
  if (r.error !== undefined && (typeof r.error !== 'object' || r.error === null || typeof r.error.message !== 'string')) {
    throw bad('error must be { message, status? }');
  }
  let definitions: Record<string, unknown>;
  try {
    // Entries keep definitions as a JSON round trip, the same in memory as from the table.
    definitions = JSON.parse(JSON.stringify(r.definitions));
  } catch (error) {
    throw bad(`definitions are not JSON-serialisable (${(error as Error).message})`);
  }
  return { definitions, deps: r.deps, ...(r.error ? { error: { message: r.error.message, status: r.error.status } } : {}) };
}

/** The module's own error, with its dependencies' errors attached (transitively, de-duplicated by URL). */
export function assembleError(url: string, own: LoadedModule['error'], depErrors: ModuleError[]): ModuleError | undefined {
  const additional = dedupe(
    depErrors.flatMap((e) => [...(e.fromDependency ? [] : [stripNested(e)]), ...(e.additionalErrors ?? [])]),
  ).filter((e) => e.url !== url);
  if (own) {
    return { message: own.message, ...(own.status !== undefined ? { status: own.status } : {}), url, ...withAdditional(additional) };
  }
  if (additional.length === 0) return undefined;
  const first = additional[0];
  return {
    message: `dependency ${first.url ?? '(unknown)'} failed: ${first.message}`,
    status: first.status ?? 500,
    url,
    fromDependency: true,
    additionalErrors: additional,
  };
}

function withAdditional(additional: ModuleError[]) {
  return additional.length ? { additionalErrors: additional } : {};
}

function stripNested(e: ModuleError): ModuleError {
  const { additionalErrors: _ignored, ...rest } = e;
  return rest;
}

function dedupe(errors: ModuleError[]): ModuleError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const key = e.url ?? e.message;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
