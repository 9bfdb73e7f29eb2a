import type { LookupContext, FencedEntry } from '../local/context';
import { toEntry, type StoredRow } from '../persistence/entries';
import type { LoadedModule, ModuleCacheEntry, ModuleError } from '../types';

/** A stored row as a fenced entry, valid as of the watermark of the snapshot it was read in. */
export function fencedRow(row: StoredRow, watermark: string): FencedEntry {
  return { entry: toEntry(row), alias: row.alias, realm: row.realm, watermark };
}

/** What a computation produced for one candidate, ready to persist. */
export interface BuiltEntry {
  entry: ModuleCacheEntry;
  alias: string;
  /** The computation's own timings and the source's diagnostics, as stored. */
  diagnostics: Record<string, unknown>;
}

/**
 * The entry of a computed candidate, with its fields in the order toEntry() reads them back: an
 * entry is the same JSON from every tier.
 */
export function buildEntry(
  candidate: string,
  ctx: LookupContext,
  alias: string,
  loaded: LoadedModule,
  deps: string[],
  error: ModuleError | undefined,
  timing: { computeStarted: number; attempt: number },
): BuiltEntry {
  const diagnostics = {
    computeMs: Math.round(performance.now() - timing.computeStarted),
    attempt: timing.attempt,
    requested: ctx.url,
    ...(loaded.diagnostics !== undefined ? { source: loaded.diagnostics } : {}),
  };
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
  return { entry, alias, diagnostics };
}
