import { Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import type { DataSource } from 'typeorm';
import type { PostgresDriver } from 'typeorm/driver/postgres/PostgresDriver';
import { ModuleCacheSchemaError } from '../errors';
import { messages } from '../messages';
import { asDatabaseError, isConnectionFailure } from './connection-failures';
import type { ModuleCacheEntry, ModuleError } from '../types';
import { ackPayloadSql, syncMarkerSql } from '../wire/sync-marker';

export interface StoredRow {
  url: string;
  realm: string;
  scope: string;
  alias: string;
  definitions: Record<string, unknown>;
  deps: string[];
  error: ModuleError | null;
  diagnostics: Record<string, unknown> | null;
  /** Milliseconds since the epoch, as text (see EPOCH_MS). */
  created_ms: string;
}

/** A row (or none) and the committed fence watermark of the snapshot it was read in. */
export interface ReadResult {
  row?: StoredRow;
  watermark: string;
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

/** A cached entry a computation incorporated, and the watermark under which it was obtained. */
export interface FencePart {
  alias: string;
  realm: string;
  watermark: string;
}

export type PersistResult =
  | { status: 'persisted'; createdAt: Date; watermark: string }
  /** `stale`: the incorporated aliases (and the module's own, if its inputs moved) invalidated after their watermark. */
  | { status: 'fenced' | 'expired'; watermark: string; stale: string[] };

export interface InvalidatedRow {
  url: string;
  realm: string;
  alias: string;
}

/** Builds the NOTIFY payloads once the transaction knows what it deleted. */
export type PayloadBuilder<T> = (result: T) => string[];

/** What module_cache_require_read_committed() raises outside READ COMMITTED. */
const NEEDS_READ_COMMITTED = 'MCRC0';

/**
 * A timestamp as whole milliseconds since the epoch, as text: node-postgres parses timestamps only
 * in the ISO DateStyle (a database set to another gives null), and a float's digits depend on
 * extra_float_digits; an integer reads the same under any setting.
 */
const EPOCH_MS = (column: string) => `floor(extract(epoch FROM ${column}) * 1000)::bigint::text`;

/**
 * Rows and the committed watermark from one snapshot, by URL (`key = url`) or by alias; error rows
 * count only while younger than `$4` ms. The hash finds the row, the text makes sure it is the one.
 */
const read = (key: 'url' | 'alias') => `
  SELECT f.committed_seq::text AS watermark,
         e.url, e.realm, e.scope, e.alias, e.definitions, e.deps, e.error, e.diagnostics, ${EPOCH_MS('e.created_at')} AS created_ms
    FROM module_cache_fence f
    LEFT JOIN module_cache_entries e
      ON e.${key}_hash = ANY($1::uuid[]) AND e.${key} = ANY($2::text[]) AND e.scope = $3
     AND (e.error IS NULL OR e.created_at > now() - $4::bigint * interval '1 millisecond')`;
const READ_BY_URL = read('url');
const READ_BY_ALIAS = read('alias');

/** md5(url)::uuid, as the table's generated key columns compute it. */
export function urlHash(url: string): string {
  const h = createHash('md5').update(url, 'utf8').digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

interface Statement {
  /** Hot statements are named (prepared once per pooled connection). */
  name?: string;
  text: string;
  values: unknown[];
}

/**
 * Everything that speaks SQL. Every statement is parameterised; channel names travel as
 * `pg_notify` arguments, never spliced into SQL. Statements that wait for the fence lock run
 * under READ COMMITTED whatever the database's default: in one round trip when that is already
 * the default, else (learnt from the first refusal) inside explicit READ COMMITTED transactions.
 */
export class ModuleCacheRepository {
  private readonly logger = new Logger('ModuleCacheRepository');
  private explicitReadCommitted = false;

  /**
   * `preparedStatements: false` for a pool behind a transaction-pooling proxy that does not keep
   * named prepared statements (PgBouncer before 1.21, or without max_prepared_statements).
   */
  constructor(
    private readonly dataSource: DataSource,
    private readonly preparedStatements = true,
  ) {}

  async assertSchema(): Promise<void> {
    const rows = await this.dataSource.query(
      `SELECT to_regclass('module_cache_fence') IS NOT NULL
          AND to_regprocedure('module_cache_persist(text,text,text,text,json,text[],json,json,bigint,text[],text[],bigint[])') IS NOT NULL AS ok`,
    );
    if (!rows[0]?.ok) throw new ModuleCacheSchemaError(messages.schemaMissing());
  }

  /** The first fresh row among `candidates` (in candidate order), and the watermark it is valid as of. */
  async read(candidates: string[], scope: string, errorTtlMs: number): Promise<ReadResult> {
    const { rows, watermark } = await this.readMany(candidates, scope, errorTtlMs);
    const row = rows.length <= 1 ? rows[0] : candidates.map((c) => rows.find((r) => r.url === c)).find((r) => r !== undefined);
    return { row, watermark };
  }

  /** Fresh rows for any of `urls` in one query, and the watermark they are valid as of. */
  async readMany(urls: string[], scope: string, errorTtlMs: number): Promise<{ rows: StoredRow[]; watermark: string }> {
    return this.readRows('module_cache_read_v3', READ_BY_URL, urls, scope, errorTtlMs);
  }

  /** Fresh rows of any URL whose alias is one of `aliases` (every spelling of those modules), and their watermark. */
  async readByAlias(aliases: string[], scope: string, errorTtlMs: number): Promise<{ rows: StoredRow[]; watermark: string }> {
    return this.readRows('module_cache_read_by_alias_v3', READ_BY_ALIAS, aliases, scope, errorTtlMs);
  }

  private async readRows(name: string, text: string, keys: string[], scope: string, errorTtlMs: number) {
    const result = await this.run<StoredRow & { watermark: string }>({ name, text, values: [keys.map(urlHash), keys, scope, errorTtlMs] });
    if (result.length === 0) throw new ModuleCacheSchemaError(messages.schemaMissing());
    return { rows: result.filter((r) => r.url !== null), watermark: result[0].watermark };
  }

  /**
   * Persists unless the database saw an invalidation of the module's inputs after `watermark`,
   * or of an incorporated entry after that entry's own watermark. Decided inside the write.
   */
  async persist(row: NewRow, watermark: string, parts: FencePart[]): Promise<PersistResult> {
    const [result] = await this.run<{
      status: PersistResult['status'];
      created_ms: string | null;
      watermark: string;
      stale: string[] | null;
    }>(
      {
        name: 'module_cache_persist_v3',
        text: `SELECT status, ${EPOCH_MS('created_at')} AS created_ms, watermark::text, stale
                 FROM module_cache_persist($1, $2, $3, $4, $5::json, $6::text[], $7::json, $8::json, $9::bigint, $10::text[], $11::text[], $12::bigint[])`,
        values: [
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
        ],
      },
      { readCommitted: true },
    );
    if (result.status === 'persisted')
      return { status: 'persisted', createdAt: new Date(Number(result.created_ms)), watermark: result.watermark };
    return { status: result.status, watermark: result.watermark, stale: result.stale ?? [] };
  }

  /**
   * Fan-out, fence log, delete and NOTIFY in one statement (one transaction: peers hear of it
   * exactly when it commits, and a failed NOTIFY rolls the delete back), if the payloads cover
   * the fan-out: `knownAliasHashes` must contain every affected alias. Otherwise nothing happens
   * and `done: false` comes back with the current fan-out to encode.
   */
  async invalidateAndNotify(
    aliases: string[],
    knownAliasHashes: string[],
    retentionMs: number,
    channel: string,
    payloads: string[],
  ): Promise<{ done: boolean; rows: Array<InvalidatedRow & { alias_hash: string }>; seq?: string }> {
    const result = await this.run<InvalidatedRow & { alias_hash: string; done: boolean; seq: string | null }>(
      {
        name: 'module_cache_invalidate_and_notify_v2',
        text: `SELECT url, realm, alias, alias_hash::text, done, seq::text
                 FROM module_cache_invalidate_and_notify($1::text[], $2::uuid[], $3::bigint, $4, $5::text[])`,
        values: [aliases, knownAliasHashes, retentionMs, channel, payloads],
      },
      { readCommitted: true },
    );
    const status = result.at(-1);
    if (!status || status.url !== null) throw new Error('module_cache_invalidate_and_notify returned no status row');
    return { done: status.done, rows: result.slice(0, -1), ...(status.seq ? { seq: status.seq } : {}) };
  }

  /**
   * A module invalidation in one statement: fan-out, fence log, delete, and the NOTIFY payloads
   * encoded by the database (unsigned: `origin` null for the seed's format). Returns the URLs of
   * the deleted rows (one per row: a URL cached in several scopes comes back several times), the
   * invalidation's sequence and the number of payloads sent.
   */
  async invalidateEncoded(
    target: { alias: string; realm: string; variants: string[] },
    encoding: { origin: string | null; budget: number },
    retentionMs: number,
    channel: string,
  ): Promise<{ urls: string[]; seq: string; sent: number }> {
    const [row] = await this.run<{ urls: string; seq: string; payloads: number }>(
      {
        name: 'module_cache_invalidate_encoded',
        text: `SELECT urls, seq::text, payloads FROM module_cache_invalidate_encoded($1, $2, $3::text[], $4, $5::int, $6::bigint, $7)`,
        values: [target.alias, target.realm, target.variants, encoding.origin, encoding.budget, retentionMs, channel],
      },
      { readCommitted: true },
    );
    return { urls: row.urls ? row.urls.split('\n') : [], seq: row.seq, sent: row.payloads };
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
    onAffected: PayloadBuilder<InvalidatedRow[]>,
  ): Promise<{ rows: InvalidatedRow[]; seq: string }> {
    return this.dataSource.transaction('READ COMMITTED', async (manager) => {
      const rows: Array<InvalidatedRow & { seq: string }> = await manager.query(
        `SELECT url, realm, alias, seq::text FROM module_cache_invalidate_modules($1::text[], $2::bigint)`,
        [aliases, retentionMs],
      );
      const payloads = onAffected(rows);
      if (payloads.length) await manager.query(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, [channel, payloads]);
      // Written by this transaction, under the fence lock it still holds.
      const [{ seq }]: Array<{ seq: string }> = await manager.query(`SELECT committed_seq::text AS seq FROM module_cache_fence`);
      return { rows, seq };
    });
  }

  /** Deletes the rows of a realm prefix (nested realms included), logs it and NOTIFYs, in one statement. */
  async clearRealm(realm: string, retentionMs: number, channel: string, payloads: string[]): Promise<{ deleted: number; seq: string }> {
    const [row] = await this.run<{ deleted: string; seq: string }>(
      {
        text: `SELECT deleted, seq::text FROM module_cache_clear_realm($1, $2::bigint, $3, $4::text[])`,
        values: [realm, retentionMs, channel, payloads],
      },
      { readCommitted: true },
    );
    return { deleted: Number(row.deleted), seq: row.seq };
  }

  async clearAll(retentionMs: number, channel: string, payloads: string[]): Promise<{ deleted: number; seq: string }> {
    const [row] = await this.run<{ deleted: string; seq: string }>(
      {
        text: `SELECT deleted, seq::text FROM module_cache_clear_all($1::bigint, $2, $3::text[])`,
        values: [retentionMs, channel, payloads],
      },
      { readCommitted: true },
    );
    return { deleted: Number(row.deleted), seq: row.seq };
  }

  // ---- membership (consistency: 'strong') ---------------------------------------------------

  /**
   * Renews this process's lease (now + `leaseMs`, by the database clock); `join` (after every
   * (re)connect) also says it has applied every invalidation committed so far. Peers whose lease
   * ended an hour ago are forgotten on the way.
   */
  async renewLease(id: string, applicationName: string, leaseMs: number, join: boolean): Promise<void> {
    await this.run({
      name: 'module_cache_renew_lease',
      text: `WITH gone AS (DELETE FROM module_cache_peers WHERE lease_expires_at < now() - interval '1 hour' AND id <> $1)
             INSERT INTO module_cache_peers AS p (id, application_name, acked_seq, lease_expires_at)
             SELECT $1, $2, f.committed_seq, now() + $3::bigint * interval '1 millisecond' FROM module_cache_fence f
             ON CONFLICT (id) DO UPDATE
               SET lease_expires_at = EXCLUDED.lease_expires_at,
                   acked_seq = CASE WHEN $4::boolean THEN EXCLUDED.acked_seq ELSE p.acked_seq END`,
      values: [id, applicationName, leaseMs, join],
    });
  }

  /**
   * Records that this process applied everything up to the highest of `markers` whose token is
   * its invalidation's (a forged marker counts for nothing), and wakes the invalidators waiting
   * on it. Returns the sequence recorded, or undefined when no marker was genuine. Committed
   * without waiting for the WAL flush: an acknowledgement lost in a crash only makes an
   * invalidator wait for a lease, and every peer joins again after the server comes back.
   */
  async acknowledge(id: string, markers: Array<{ seq: string; token: string }>, ackChannel: string): Promise<string | undefined> {
    const [row] = await this.run<{ acked: string }>({
      name: 'module_cache_acknowledge_v2',
      text: `WITH genuine AS (
               SELECT max(l.seq) AS seq FROM unnest($2::bigint[], $3::uuid[]) AS m(seq, token)
                 JOIN module_cache_fence_log l ON l.seq = m.seq AND l.token = m.token
             ), acked AS (
               UPDATE module_cache_peers p SET acked_seq = greatest(p.acked_seq, g.seq) FROM genuine g
                WHERE p.id = $1 AND g.seq IS NOT NULL RETURNING g.seq
             )
             SELECT seq::text AS acked, pg_notify($4, ${ackPayloadSql('seq')}), set_config('synchronous_commit', 'off', true) FROM acked`,
      values: [id, markers.map((m) => m.seq), markers.map((m) => m.token), ackChannel],
    });
    return row?.acked;
  }

  /**
   * Live peers (not `id`), those of them that have not acknowledged `seq`, and how long until the
   * first of the latter's leases ends (database clock).
   */
  async awaitedPeers(id: string, seq: string): Promise<{ live: number; waiting: string[]; expiresInMs: number }> {
    const [row] = await this.run<{ live: number; waiting: string[] | null; expires_in_ms: number | null }>({
      name: 'module_cache_awaited_peers',
      text: `SELECT count(*)::int AS live,
                    array_agg(id) FILTER (WHERE acked_seq < $2::bigint) AS waiting,
                    (min(extract(epoch FROM lease_expires_at - now())) FILTER (WHERE acked_seq < $2::bigint) * 1000)::float8 AS expires_in_ms
               FROM module_cache_peers WHERE id <> $1 AND lease_expires_at > now()`,
      values: [id, seq],
    });
    return { live: row.live, waiting: row.waiting ?? [], expiresInMs: Math.max(0, row.expires_in_ms ?? 0) };
  }

  /** How many of `ids` have not acknowledged `seq` (their lease ran out instead, or they left). */
  async unacknowledged(ids: string[], seq: string): Promise<number> {
    const [row] = await this.run<{ n: number }>({
      text: `SELECT (cardinality($1::text[]) - count(*))::int AS n FROM module_cache_peers WHERE id = ANY($1::text[]) AND acked_seq >= $2::bigint`,
      values: [ids, seq],
    });
    return row.n;
  }

  /** Live peers besides `id`, and how many of them have not acknowledged the latest invalidation. */
  async peerSummary(id: string): Promise<{ peers: number; lagging: number }> {
    const [row] = await this.run<{ peers: number; lagging: number }>({
      text: `SELECT count(*)::int AS peers, count(*) FILTER (WHERE p.acked_seq < f.committed_seq)::int AS lagging
               FROM module_cache_peers p, module_cache_fence f WHERE p.id <> $1 AND p.lease_expires_at > now()`,
      values: [id],
    });
    return row;
  }

  async leave(id: string): Promise<void> {
    await this.run({ text: `DELETE FROM module_cache_peers WHERE id = $1`, values: [id] });
  }

  /**
   * Strong consistency's sync marker of the committed invalidation `seq`, through the pool: the
   * database puts the invalidation's token between `before` and `after`.
   */
  async notifySync(channel: string, seq: string, { before, after }: { before: string; after: string }): Promise<void> {
    const sent = await this.run({
      text: `SELECT pg_notify($1, ${syncMarkerSql('$2', 'l.token', '$3')}) FROM module_cache_fence_log l WHERE l.seq = $4::bigint`,
      values: [channel, before, after, seq],
    });
    if (sent.length === 0) throw new Error(`invalidation ${seq} is not in the fence log any more`);
  }

  /** One NOTIFY through the pool: the path peers' invalidations take (heartbeat probes use it). */
  async notify(channel: string, payload: string): Promise<void> {
    await this.run({ text: `SELECT pg_notify($1, $2)`, values: [channel, payload] });
  }

  /** Fraction (0..1) of the server's NOTIFY queue in use. */
  async notifyQueueUsage(): Promise<number> {
    const [row] = await this.run<{ usage: number }>({ text: `SELECT pg_notification_queue_usage() AS usage`, values: [] });
    return Number(row?.usage ?? 0);
  }

  /**
   * One statement on a pooled connection (through the driver's public `obtainMasterConnection`,
   * so hot statements can be named and planned once per connection). `readCommitted` statements
   * that the database refuses to run outside READ COMMITTED are run again in such a transaction,
   * and so are all later ones.
   */
  private async run<T>(statement: Statement, { readCommitted = false } = {}): Promise<T[]> {
    if (readCommitted && this.explicitReadCommitted) return this.inReadCommittedTransaction<T>(statement);
    try {
      return await this.onPooledConnection<T>(statement);
    } catch (error) {
      if (!readCommitted || (error as { code?: string }).code !== NEEDS_READ_COMMITTED) throw error;
      if (!this.explicitReadCommitted) {
        this.explicitReadCommitted = true;
        this.logger.log(`${(error as Error).message}: running the cache's fenced statements in READ COMMITTED transactions from now on`);
      }
      return this.inReadCommittedTransaction<T>(statement);
    }
  }

  private async onPooledConnection<T>(statement: Statement): Promise<T[]> {
    const [client, release] = await (this.dataSource.driver as PostgresDriver).obtainMasterConnection().catch((error: unknown) => {
      throw asDatabaseError(error);
    });
    // pg's pool takes its own 'error' listener off a client while it is lent out: without one of
    // ours, a connection lost now (a server restart, a killed backend) is an uncaught 'error' event.
    let lost: unknown;
    const onError = (error: Error) => (lost ??= error);
    const pgClient = client as PgClientLike;
    pgClient.on('error', onError);
    let failure: unknown;
    try {
      const query = this.preparedStatements ? statement : { text: statement.text, values: statement.values };
      const result = await pgClient.query<T>(query);
      return result.rows;
    } catch (error) {
      failure = error;
      throw asDatabaseError(error);
    } finally {
      const broken = lost ?? (isConnectionFailure(failure) ? failure : undefined);
      if (broken === undefined) pgClient.removeListener('error', onError);
      // A broken connection is never handed out again; it keeps a listener for the rest of its short life.
      release(broken instanceof Error ? broken : broken === undefined ? undefined : new Error(String(broken)));
    }
  }

  private inReadCommittedTransaction<T>(statement: Statement): Promise<T[]> {
    return this.dataSource
      .transaction('READ COMMITTED', (manager) => manager.query(statement.text, statement.values))
      .catch((error: unknown) => {
        throw asDatabaseError(error);
      });
  }
}

interface PgClientLike {
  query<T>(config: Statement | { text: string; values: unknown[] }): Promise<{ rows: T[] }>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
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
