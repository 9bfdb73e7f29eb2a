import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import type { DataSource, QueryRunner } from 'typeorm';
import { ModuleCacheSchemaError } from '../errors';
import { messages } from '../messages';
import type { ModuleCacheEntry, ModuleError } from '../types';

export interface StoredRow {
  url: string;
  realm: string;
  scope: string;
  alias: string;
  definitions: Record<string, unknown>;
  deps: string[];
  error: ModuleError | null;
  created_at: Date;
}

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

export interface InvalidatedRow {
  url: string;
  realm: string;
  alias: string;
}

/** Builds the NOTIFY payloads once the transaction knows what it deleted. */
export type PayloadBuilder<T> = (result: T) => string[];

const ROW_COLUMNS = `e.url, e.realm, e.scope, e.alias, e.definitions, e.deps, e.error, e.created_at`;
const FRESH = `(e.error IS NULL OR e.created_at > now() - $3::bigint * interval '1 millisecond')`;

/** md5(url)::uuid, as the table's generated key columns compute it. */
export function urlHash(url: string): string {
  const h = createHash('md5').update(url, 'utf8').digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Everything that speaks SQL. Every statement is parameterised; channel names travel as
 * `pg_notify` arguments, never spliced into SQL.
 */
export class ModuleCacheRepository {
  /** Round trips issued, for the measurements the README reports. */
  roundTrips = 0;

  constructor(private readonly dataSource: DataSource) {}

  async assertSchema(): Promise<void> {
    const rows = await this.query<{ ok: boolean }>(
      `SELECT to_regclass('module_cache_entries') IS NOT NULL
          AND to_regprocedure('module_cache_fenced_upsert(text,text,text,text,jsonb,text[],jsonb,jsonb,bigint)') IS NOT NULL AS ok`,
    );
    if (!rows[0]?.ok) {
      throw new ModuleCacheSchemaError(messages.schemaMissing());
    }
  }

  /** The first fresh row among `candidates`, in candidate order. */
  async read(candidates: string[], scope: string, errorTtlMs: number): Promise<StoredRow | undefined> {
    const rows = await this.readMany(candidates, scope, errorTtlMs);
    if (rows.length <= 1) return rows[0];
    return candidates.map((c) => rows.find((r) => r.url === c)).find((r) => r !== undefined);
  }

  /**
   * The fence watermark a computation must carry: read after the table miss and before the
   * source runs, so any invalidation from then on gets a higher sequence number.
   */
  async watermark(): Promise<string> {
    const [row] = await this.prepared<{ watermark: string }>(
      'module_cache_watermark',
      `SELECT module_cache_fence_watermark()::text AS watermark`,
    );
    return row.watermark;
  }

  /** Fresh rows for any of `urls` in one query. */
  async readMany(urls: string[], scope: string, errorTtlMs: number): Promise<StoredRow[]> {
    if (urls.length === 0) return [];
    return this.prepared<StoredRow>(
      'module_cache_read',
      `SELECT ${ROW_COLUMNS} FROM module_cache_entries e WHERE e.url_hash = ANY($1::uuid[]) AND e.scope = $2 AND ${FRESH}`,
      [urls.map(urlHash), scope, errorTtlMs],
    );
  }

  /** Persists unless the database saw an invalidation of the row, its deps, its realm or everything after `watermark`. */
  async fencedUpsert(row: NewRow, watermark: string): Promise<Date | undefined> {
    const result = await this.prepared<{ created_at: Date | null }>(
      'module_cache_fenced_upsert',
      `SELECT module_cache_fenced_upsert($1, $2, $3, $4, $5::jsonb, $6::text[], $7::jsonb, $8::jsonb, $9::bigint) AS created_at`,
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
      ],
    );
    return result[0]?.created_at ?? undefined;
  }

  /**
   * Fence log, delete and NOTIFY in one statement (one transaction: peers hear of it exactly
   * when it commits, and a failed NOTIFY rolls the delete back), if the payloads cover the
   * fan-out: `knownAliasHashes` must contain every affected alias. Otherwise nothing happens
   * and `done: false` comes back with the current fan-out to encode.
   */
  async invalidateAndNotify(
    aliases: string[],
    knownAliasHashes: string[],
    retentionMs: number,
    channel: string,
    payloads: string[],
  ): Promise<{ done: boolean; rows: Array<InvalidatedRow & { alias_hash: string }> }> {
    const result = await this.prepared<InvalidatedRow & { alias_hash: string; done: boolean }>(
      'module_cache_invalidate_and_notify',
      `SELECT url, realm, alias, alias_hash::text, done
         FROM module_cache_invalidate_and_notify($1::text[], $2::uuid[], $3::bigint, $4, $5::text[])`,
      [aliases, knownAliasHashes, retentionMs, channel, payloads],
    );
    const status = result.at(-1);
    if (!status || status.url !== null) throw new Error('module_cache_invalidate_and_notify returned no status row');
    return { done: status.done, rows: result.slice(0, -1) };
  }

  /**
   * The same inside one explicit transaction, for a graph that keeps changing: fan-out, fence
   * log and delete first, then the NOTIFYs encoded from what was deleted, then COMMIT.
   * `onAffected` runs synchronously as soon as the fan-out is known.
   */
  async invalidateModules(
    aliases: string[],
    retentionMs: number,
    channel: string,
    onAffected: (rows: InvalidatedRow[]) => string[],
  ): Promise<InvalidatedRow[]> {
    return this.transaction(async (runner) => {
      const rows: InvalidatedRow[] = await this.run(runner, `SELECT * FROM module_cache_invalidate_modules($1::text[], $2::bigint)`, [
        aliases,
        retentionMs,
      ]);
      await this.notify(runner, channel, onAffected(rows));
      return rows;
    });
  }

  async clearRealm(realm: string, channel: string, payloads: string[]): Promise<number> {
    return this.transaction(async (runner) => {
      const [row] = await this.run(runner, `SELECT module_cache_clear_realm($1) AS count`, [realm]);
      await this.notify(runner, channel, payloads);
      return Number(row.count);
    });
  }

  async clearAll(channel: string, payloads: string[]): Promise<number> {
    return this.transaction(async (runner) => {
      const [row] = await this.run(runner, `SELECT module_cache_clear_all() AS count`);
      await this.notify(runner, channel, payloads);
      return Number(row.count);
    });
  }

  /** Fraction (0..1) of the server's NOTIFY queue in use. */
  async notifyQueueUsage(): Promise<number> {
    const [row] = await this.query<{ usage: number }>(`SELECT pg_notification_queue_usage() AS usage`);
    return Number(row?.usage ?? 0);
  }

  private async notify(runner: QueryRunner, channel: string, payloads: string[]): Promise<void> {
    if (payloads.length === 0) return;
    await this.run(runner, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, [channel, payloads]);
  }

  private async transaction<T>(work: (runner: QueryRunner) => Promise<T>): Promise<T> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      this.roundTrips++;
      await runner.startTransaction();
      try {
        const result = await work(runner);
        this.roundTrips++;
        await runner.commitTransaction();
        return result;
      } catch (error) {
        if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
        throw error;
      }
    } finally {
      await runner.release();
    }
  }

  private async run<T = Record<string, unknown>>(runner: QueryRunner, sql: string, params: unknown[] = []): Promise<T[]> {
    this.roundTrips++;
    return runner.query(sql, params);
  }

  private async query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    this.roundTrips++;
    return this.dataSource.query(sql, params);
  }

  /**
   * Hot-path statements run as named prepared statements on the DataSource's pg pool, so
   * Postgres plans them once per connection instead of on every lookup.
   */
  private async prepared<T>(name: string, text: string, values: unknown[] = []): Promise<T[]> {
    const pool = (this.dataSource.driver as unknown as { master?: Pool }).master;
    if (!pool || typeof pool.query !== 'function') return this.query<T>(text, values);
    this.roundTrips++;
    return (await pool.query<T & Record<string, unknown>>({ name, text, values })).rows;
  }
}

export function toEntry(row: StoredRow): ModuleCacheEntry {
  return {
    url: row.url,
    realmURL: row.realm,
    scope: row.scope,
    definitions: row.definitions,
    deps: row.deps,
    ...(row.error ? { error: row.error } : {}),
    createdAt: row.created_at,
  };
}
