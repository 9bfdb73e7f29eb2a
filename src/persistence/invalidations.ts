import { InvalidationUnconfirmedError, ModuleCacheSchemaError } from '../errors';
import { messages } from '../messages';
import type { SqlRunner } from './sql';
import {
  CLEAR_ALL,
  CLEAR_REALM,
  COMMITTED_WATERMARK,
  FENCE_LOG_SINCE,
  INVALIDATE_AND_NOTIFY,
  INVALIDATE_ENCODED,
  INVALIDATE_MODULES,
  NOTIFY,
  NOTIFY_EACH,
  NOTIFY_QUEUE_USAGE,
  NOTIFY_SYNC,
  PROBE,
  REPLAY_LOCK,
} from './statements';

/** A row an invalidation deleted (or, when it handed the fan-out back instead, would delete). */
export interface InvalidatedRow {
  url: string;
  realm: string;
  alias: string;
}

/** Builds the NOTIFY payloads once the transaction knows what it deleted. */
export type PayloadBuilder<T> = (result: T) => string[];

export interface InvalidationStoreConfig {
  /** The channel invalidations (and heartbeat probes, and sync markers) are NOTIFYed on. */
  channel: string;
  /** How long fence-log rows are kept: in-flight computations older than this are refused. */
  retentionMs: number;
}

/**
 * One fence-log row: what an invalidation touched. A module row names the affected aliases (the
 * fan-out included) by their md5 uuid (`urlHash`), not by text.
 */
export type FenceLogRow =
  { seq: string; kind: 'module'; aliasHashes: string[] } | { seq: string; kind: 'realm'; realm: string } | { seq: string; kind: 'global' };

/** The log after a sequence, as of one snapshot: its rows, and the fence's committed and pruned sequences. */
export interface FenceLogRange {
  committed: string;
  /** Rows up to this sequence may be gone: a range starting below it is incomplete. */
  pruned: string;
  rows: FenceLogRow[];
}

/** What an invalidation statement deleted, and the fence sequence it committed. */
export interface Cleared {
  deleted: number;
  seq: string;
}

/**
 * Invalidations: fan-out, fence log, delete and NOTIFY, committed together so that peers hear of
 * an invalidation exactly when it commits, and a failed NOTIFY rolls the delete back. Also the
 * other NOTIFYs that go through the pool (sync markers, heartbeat probes), which must take the
 * path invalidations take.
 */
export class InvalidationStore {
  constructor(
    private readonly sql: SqlRunner,
    private readonly config: InvalidationStoreConfig,
  ) {}

  /**
   * All of it in one statement if the payloads cover the fan-out: `knownAliasHashes` must contain
   * every affected alias. Otherwise nothing happens and `done: false` comes back with the current
   * fan-out to encode.
   */
  async invalidateAndNotify({
    aliases,
    knownAliasHashes,
    payloads,
  }: {
    aliases: string[];
    knownAliasHashes: string[];
    payloads: string[];
  }): Promise<{ done: boolean; rows: Array<InvalidatedRow & { alias_hash: string }>; seq?: string }> {
    const { channel, retentionMs } = this.config;
    const result = await this.sql.run<InvalidatedRow & { alias_hash: string; done: boolean; seq: string | null }>(
      INVALIDATE_AND_NOTIFY,
      [aliases, knownAliasHashes, retentionMs, channel, payloads],
      { readCommitted: true },
    );
    const status = result.at(-1);
    // The function always ends with its status row: without one it is not the function this version calls.
    if (!status || status.url !== null) throw new ModuleCacheSchemaError(messages.noStatusRow('module_cache_invalidate_and_notify'));
    return { done: status.done, rows: result.slice(0, -1), ...(status.seq ? { seq: status.seq } : {}) };
  }

  /**
   * A module invalidation in one statement, with the NOTIFY payloads encoded by the database
   * (unsigned: `origin` null for the reference server's format). Returns the URLs of the deleted
   * rows (one per row: a URL cached in several scopes comes back several times), the
   * invalidation's sequence and the number of payloads sent.
   */
  async invalidateEncoded({
    target,
    encoding,
  }: {
    target: { alias: string; realm: string; variants: string[] };
    encoding: { origin: string | null; budget: number };
  }): Promise<{ urls: string[]; seq: string; sent: number }> {
    const { channel, retentionMs } = this.config;
    const [row] = await this.sql.run<{ urls: string; seq: string; payloads: number }>(
      INVALIDATE_ENCODED,
      [target.alias, target.realm, target.variants, encoding.origin, encoding.budget, retentionMs, channel],
      { readCommitted: true },
    );
    return { urls: row.urls ? row.urls.split('\n') : [], seq: row.seq, sent: row.payloads };
  }

  /**
   * The same inside one explicit transaction, for a graph that keeps changing: fan-out, fence
   * log and delete first, then the NOTIFYs encoded from what was deleted, then COMMIT.
   * `onAffected` runs synchronously as soon as the fan-out is known.
   */
  async invalidateModules({
    aliases,
    onAffected,
  }: {
    aliases: string[];
    onAffected: PayloadBuilder<InvalidatedRow[]>;
  }): Promise<{ rows: InvalidatedRow[]; seq: string }> {
    const { channel, retentionMs } = this.config;
    return this.sql.readCommittedTransaction(async (query) => {
      const rows = await query<InvalidatedRow & { seq: string }>(INVALIDATE_MODULES, [aliases, retentionMs]);
      const payloads = onAffected(rows);
      if (payloads.length) await query(NOTIFY_EACH, [channel, payloads]);
      // Written by this transaction, under the fence lock it still holds.
      const [{ seq }] = await query<{ seq: string }>(COMMITTED_WATERMARK);
      return { rows, seq };
    });
  }

  /** Deletes the rows of a realm prefix (nested realms included), logs it and NOTIFYs, in one statement. */
  async clearRealm({ realm, payloads }: { realm: string; payloads: string[] }): Promise<Cleared> {
    const [row] = await this.sql.run<{ deleted: string; seq: string }>(
      CLEAR_REALM,
      [realm, this.config.retentionMs, this.config.channel, payloads],
      { readCommitted: true },
    );
    return { deleted: Number(row.deleted), seq: row.seq };
  }

  /** Deletes every row, logs it and NOTIFYs, in one statement. */
  async clearAll({ payloads }: { payloads: string[] }): Promise<Cleared> {
    const [row] = await this.sql.run<{ deleted: string; seq: string }>(
      CLEAR_ALL,
      [this.config.retentionMs, this.config.channel, payloads],
      {
        readCommitted: true,
      },
    );
    return { deleted: Number(row.deleted), seq: row.seq };
  }

  /**
   * Strong consistency's sync marker of the committed invalidation `seq`, through the pool: the
   * database puts the invalidation's token between `before` and `after`.
   */
  async notifySync({ seq, before, after }: { seq: string; before: string; after: string }): Promise<void> {
    const sent = await this.sql.run(NOTIFY_SYNC, [this.config.channel, before, after, seq]);
    if (sent.length === 0) throw new InvalidationUnconfirmedError(messages.notInFenceLog(seq));
  }

  /**
   * A reconnect's replay: the fence-log rows after `after` (none when undefined), the committed and
   * pruned sequences, and the `marker` NOTIFY, under the fence lock held shared (waited for at most
   * `lockTimeoutMs`), so the marker separates the notifications of the rows' invalidations from
   * those of later ones.
   */
  async replaySince({
    after,
    marker,
    lockTimeoutMs,
  }: {
    after: string | undefined;
    marker: string;
    lockTimeoutMs: number;
  }): Promise<FenceLogRange> {
    return this.sql.readCommittedTransaction(async (query) => {
      await query(REPLAY_LOCK, [String(Math.max(1, Math.round(lockTimeoutMs)))]);
      const result = await query<{
        committed: string;
        pruned: string;
        seq: string | null;
        kind: string;
        realm: string | null;
        aliases: string[] | null;
      }>(FENCE_LOG_SINCE, [after ?? null]);
      if (result.length === 0) throw new ModuleCacheSchemaError(messages.schemaMissing());
      await query(NOTIFY, [this.config.channel, marker]);
      const rows: FenceLogRow[] = [];
      for (const r of result) {
        if (r.seq === null) continue;
        if (r.kind === 'module') rows.push({ seq: r.seq, kind: 'module', aliasHashes: r.aliases ?? [] });
        else if (r.kind === 'realm' && r.realm !== null) rows.push({ seq: r.seq, kind: 'realm', realm: r.realm });
        else rows.push({ seq: r.seq, kind: 'global' });
      }
      return { committed: result[0].committed, pruned: result[0].pruned, rows };
    });
  }

  /**
   * A heartbeat probe through the pool (the path peers' invalidations take), returning the
   * committed watermark read in the same snapshot: once the probe arrives, every invalidation up
   * to it has been delivered.
   */
  async probe(payload: string): Promise<string> {
    const [row] = await this.sql.run<{ seq: string }>(PROBE, [this.config.channel, payload]);
    return row.seq;
  }

  /** One NOTIFY through the pool: the path peers' invalidations take (heartbeat probes use it). */
  async notify(payload: string): Promise<void> {
    await this.sql.run(NOTIFY, [this.config.channel, payload]);
  }

  /** Fraction (0..1) of the server's NOTIFY queue in use. */
  async notifyQueueUsage(): Promise<number> {
    const [row] = await this.sql.run<{ usage: number }>(NOTIFY_QUEUE_USAGE, []);
    return Number(row?.usage ?? 0);
  }
}
