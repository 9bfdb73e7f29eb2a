import { LRUCache } from 'lru-cache';
import type { FencedEntry } from './context';

/** A fenced entry in memory, and when it got there. */
export interface MemoryRecord extends FencedEntry {
  storedAt: number;
}

/**
 * Bounded LRU of entries keyed by (scope, requested URL), with a secondary index by alias so an
 * invalidation evicts every spelling and every scope of a module without scanning the cache.
 */
export class MemoryTier {
  private readonly cache: LRUCache<string, MemoryRecord> | undefined;
  private readonly byAlias = new Map<string, Set<string>>();

  constructor(maxEntries: number | false) {
    if (maxEntries === false) return;
    this.cache = new LRUCache<string, MemoryRecord>({
      max: maxEntries,
      dispose: (record, key) => this.unindex(record.alias, key),
    });
  }

  get size(): number {
    return this.cache?.size ?? 0;
  }

  /** The record, unless it is an error older than errorTtlMs (then it is dropped). */
  get(url: string, scope: string, errorTtlMs: number): MemoryRecord | undefined {
    return this.getByKey(memoryKey(url, scope), errorTtlMs);
  }

  /** The same by a key from memoryKey(): the hot path keeps keys it computed once. */
  getByKey(key: string, errorTtlMs: number): MemoryRecord | undefined {
    const record = this.cache?.get(key);
    if (!record) return undefined;
    // Age counts from the row's creation (as in the table tier), not from when it reached memory.
    if (record.entry.error && Date.now() - Math.min(record.storedAt, record.entry.createdAt.getTime()) >= errorTtlMs) {
      this.cache!.delete(key);
      return undefined;
    }
    return record;
  }

  /** A record of any spelling of the module `alias` in `scope` (dependencies are named by alias). */
  getByAlias(alias: string, scope: string, errorTtlMs: number): MemoryRecord | undefined {
    const prefix = `${scope}\u0000`;
    for (const key of this.byAlias.get(alias) ?? []) {
      if (!key.startsWith(prefix)) continue;
      const record = this.get(key.slice(prefix.length), scope, errorTtlMs);
      if (record) return record;
    }
    return undefined;
  }

  set(url: string, scope: string, record: Omit<MemoryRecord, 'storedAt'>): void {
    if (!this.cache) return;
    const key = memoryKey(url, scope);
    this.cache.set(key, { ...record, storedAt: Date.now() });
    let keys = this.byAlias.get(record.alias);
    if (!keys) this.byAlias.set(record.alias, (keys = new Set()));
    keys.add(key);
  }

  /** The aliases that have entries (each once). */
  aliases(): IterableIterator<string> {
    return this.byAlias.keys();
  }

  evictAlias(alias: string): void {
    const keys = this.byAlias.get(alias);
    if (!keys || !this.cache) return;
    for (const key of [...keys]) this.cache.delete(key);
  }

  /** Evicts every entry whose realm is `prefix` or (unless `exact`) nested under it. */
  evictRealm(prefix: string, { exact = false } = {}): void {
    if (!this.cache) return;
    const doomed = [...this.cache.entries()]
      .filter(([, record]) => (exact ? record.realm === prefix : record.realm.startsWith(prefix)))
      .map(([key]) => key);
    for (const key of doomed) this.cache.delete(key);
  }

  clear(): void {
    this.cache?.clear();
    this.byAlias.clear();
  }

  private unindex(alias: string, key: string): void {
    const keys = this.byAlias.get(alias);
    if (!keys) return;
    keys.delete(key);
    if (keys.size === 0) this.byAlias.delete(alias);
  }
}

export function memoryKey(url: string, scope: string): string {
  return `${scope}\u0000${url}`;
}
