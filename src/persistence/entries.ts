import { createHash } from 'node:crypto';
import { ModuleCacheSchemaError } from '../errors';
import { messages } from '../messages';
import type { ModuleCacheEntry, ModuleError } from '../types';
import type { SqlRunner } from './sql';
import { isFenceTimeout, isLockOrderConflict } from './connection-failures';
import { describeError } from '../describe-error';
import { PERSIST, READ_BY_ALIAS, READ_BY_URL, SCHEMA_CHECK, type Statement } from './statements';

/** An entry's stored form, as a read returns it. */
export interface StoredRow {
  url: string;
  realm: string;
  scope: string;
  alias: string;
  definitions: Record<string, unknown>;
  deps: string[];
  error: ModuleError | null;
  diagnostics: Record<string, unknown> | null;
  /** Milliseconds since the epoch, as text (see EPOCH_MS in statements.ts). */
  created_ms: string;
}

/** A row (or none) and the committed fence watermark of the snapshot it was read in. */
export interface ReadResult {
  row?: StoredRow;
  watermark: string;
}

/** Rows and the committed fence watermark of the snapshot they were read in. */
export interface ReadManyResult {
  rows: StoredRow[];
  watermark: string;
}

/** A row to persist. */
export interface NewRow {
  url: string;
  scope: string;
  alias: string;
  realm: string;
  definitions: Record<string, unknown>;
  deps: string[];
  error?: ModuleError;
  diagnostics: Record<string, unknown>;
}

/** A cached entry a computation incorporated, and the watermark under which it was obtained. */
export interface FencePart {
  alias: string;
  realm: string;
  watermark: string;
}

export type PersistResult =
  | { status: 'persisted'; createdAt: Date; watermark: string }
  /** `stale`: the incorporated aliases (and the module's own, if its inputs moved) invalidated after their watermark. */
  | { status: 'fenced' | 'expired'; watermark: string; stale: string[] }
  /** The fence could not be entered within `fenceWaitMs` (or a lock-order conflict was broken): nothing was written. */
  | { status: 'busy'; why: string };

export interface EntryStoreConfig {
  /** How long an error row counts as fresh; older ones read as absent. */
  errorTtlMs: number;
  /** How long a persist waits to enter the fence before it gives up (served unpersisted); 0 waits forever. */
  fenceWaitMs: number;
}

/** md5(url)::uuid, as the table's generated key columns compute it. */
export function urlHash(url: string): string {
  const h = createHash('md5').update(url, 'utf8').digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function toEntry(row: StoredRow): ModuleCacheEntry {
  return {
    url: row.url,
    realmURL: row.realm,
    scope: row.scope,
    definitions: row.definitions,
    deps: row.deps,
    ...(row.error ? { error: row.error } : {}),
    ...(row.diagnostics ? { diagnostics: row.diagnostics } : {}),
    createdAt: new Date(Number(row.created_ms)),
  };
}

/** Entry rows: reads with the watermark they are valid as of, and the fenced persist. */
export class EntryStore {
  constructor(
    private readonly sql: SqlRunner,
    private readonly config: EntryStoreConfig,
  ) {}

  /** Throws a coded schema error unless the migrations this version needs ran. */
  async assertSchema(): Promise<void> {
    const rows = await this.sql.query<{ ok: boolean }>(SCHEMA_CHECK);
    if (!rows[0]?.ok) throw new ModuleCacheSchemaError(messages.schemaMissing());
  }

  /** The first fresh row among `candidates` (in candidate order), and the watermark it is valid as of. */
  async read({ candidates, scope }: { candidates: string[]; scope: string }): Promise<ReadResult> {
    const { rows, watermark } = await this.readMany({ urls: candidates, scope });
    const row = rows.length <= 1 ? rows[0] : candidates.map((c) => rows.find((r) => r.url === c)).find((r) => r !== undefined);
    return { row, watermark };
  }

  /** Fresh rows for any of `urls` in one query, and the watermark they are valid as of. */
  readMany({ urls, scope }: { urls: string[]; scope: string }): Promise<ReadManyResult> {
    return this.readRows(READ_BY_URL, urls, scope);
  }

  /** Fresh rows of any URL whose alias is one of `aliases` (every spelling of those modules), and their watermark. */
  readByAlias({ aliases, scope }: { aliases: string[]; scope: string }): Promise<ReadManyResult> {
    return this.readRows(READ_BY_ALIAS, aliases, scope);
  }

  private async readRows(statement: Statement, keys: string[], scope: string): Promise<ReadManyResult> {
    const result = await this.sql.run<StoredRow & { watermark: string }>(statement, [
      keys.map(urlHash),
      keys,
      scope,
      this.config.errorTtlMs,
    ]);
    // The fence row is always there (the LEFT JOIN keeps it): no row at all means no schema.
    if (result.length === 0) throw new ModuleCacheSchemaError(messages.schemaMissing());
    return { rows: result.filter((r) => r.url !== null), watermark: result[0].watermark };
  }

  /**
   * Persists unless the database saw an invalidation of the module's inputs after `watermark`,
   * or of an incorporated entry after that entry's own watermark. Decided inside the write.
   */
  async persist({ row, watermark, parts }: { row: NewRow; watermark: string; parts: FencePart[] }): Promise<PersistResult> {
    try {
      return await this.persistOnce(row, watermark, parts);
    } catch (error) {
      if (isFenceTimeout(error) || isLockOrderConflict(error)) return { status: 'busy', why: describeError(error) };
      throw error;
    }
  }

  private async persistOnce(row: NewRow, watermark: string, parts: FencePart[]): Promise<PersistResult> {
    const [result] = await this.sql.run<{
      status: 'persisted' | 'fenced' | 'expired';
      created_ms: string | null;
      watermark: string;
      stale: string[] | null;
    }>(
      PERSIST,
      [
        row.url,
        row.scope,
        row.alias,
        row.realm,
        JSON.stringify(row.definitions),
        row.deps,
        row.error ? JSON.stringify(row.error) : null,
        JSON.stringify(row.diagnostics),
        watermark,
        parts.map((p) => p.alias),
        parts.map((p) => p.realm),
        parts.map((p) => p.watermark),
        this.config.fenceWaitMs,
      ],
      { readCommitted: true },
    );
    if (result.status === 'persisted')
      return { status: 'persisted', createdAt: new Date(Number(result.created_ms)), watermark: result.watermark };
    return { status: result.status, watermark: result.watermark, stale: result.stale ?? [] };
  }
}
