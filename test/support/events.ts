import { expect } from 'vitest';
import type { CachingDefinitionLookup, ModuleCacheEvent } from '../../src';

/** Every event `lookup` emits from now on. */
export function record(lookup: CachingDefinitionLookup): ModuleCacheEvent[] {
  const seen: ModuleCacheEvent[] = [];
  lookup.events$.subscribe((event) => seen.push(event));
  return seen;
}

export function ofType<T extends ModuleCacheEvent['type']>(events: ModuleCacheEvent[], type: T): Extract<ModuleCacheEvent, { type: T }>[] {
  return events.filter((e): e is Extract<ModuleCacheEvent, { type: T }> => e.type === type);
}

/** Any `durationMs`, inside an expected event. */
export const duration = expect.any(Number) as unknown as number;
