import { InvalidationUnconfirmedError, ModuleCacheSchemaError } from '../errors';
import { messages } from '../messages';
import type { SqlRunner } from './sql';
import {
  CLEAR_ALL,
  CLEAR_REALM,
  FENCE_LOG_SINCE,
  INVALIDATE_FENCED,
  INVALIDATE_MANY,
  NOTIFY,
  NOTIFY_EACH,
  NOTIFY_QUEUE_USAGE,
  NOTIFY_SYNC,
  PROBE,
  REPLAY_LOCK,
} from './statements';

/** A row an invalidation deleted. */
export interface InvalidatedRow {
  url: string;
  realm: string;
  alias: string;
}

/** Builds the NOTIFY payloads once the transaction knows what it deleted. */
export type PayloadBuilder<T> = (result: T) => string[];

export interface InvalidationStoreConfig {
  /** The channel invalidations are NOTIFYed on. */
  channel: string;
  /** The channel of heartbeat probes and sync markers: `channel` itself, or its control channel in `wireFormat: 'boxel'`. */
  controlChannel?: string;
  /** How long fence-log rows are kept: in-flight computations older than this are refused. */
  retentionMs: number;
  /** How long a statement waits to enter the fence before it gives up (SQLSTATE 55P03); 0 waits forever. */
  fenceWaitMs: number;
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

/** One module an invalidation starts from: its alias, its realm, and the URL spellings to name in payloads. */
export interface InvalidationSeed {
  alias: string;
  realm: string;
  variants: string[];
}

/**
 * Invalidations: fan-out, fence log, delete and NOTIFY, committed together so that peers hear of
 * an invalidation exactly when it commits, and a failed NOTIFY rolls the delete back. Also the
 * other NOTIFYs that go through the pool (sync markers, heartbeat probes), which must take the
 * path invalidations take. Fenced statements wait at most `fenceWaitMs` to enter the fence.
 */
export class InvalidationStore {
  constructor(
    private readonly sql: SqlRunner,
    private readonly config: InvalidationStoreConfig,
  ) {}

  /**
   * Module invalidations of many seeds in one statement, with the NOTIFY payloads encoded by the
   * database (unsigned: `origin` null for the reference server's format), each URL once per
   * realm. Each seed belongs to a caller group (a group commit carries several callers): returns,
   * per group, the URLs of the deleted rows its seeds reach (each once); the invalidation's
   * sequence and the number of payloads sent. With `syncOrigin`, the strong-mode sync marker
   * goes out in the same transaction, after the payloads.
   */
  async invalidateMany({
    seeds,
    encoding,
    syncOrigin,
  }: {
    seeds: Array<InvalidationSeed & { group: number }>;
    encoding: { origin: string | null; budget: number };
    syncOrigin?: string;
  }): Promise<{ urls: Map<number, string[]>; seq: string; sent: number }> {
    const { channel, retentionMs, fenceWaitMs } = this.config;
    const syncChannel = this.controlChannel;
    const variants = seeds.flatMap((seed) => seed.variants.map((url) => ({ url, realm: seed.realm })));
    const rows = await this.sql.run<{ grp: number; urls: string; seq: string; payloads: number }>(
      INVALIDATE_MANY,
      [
        seeds.map((s) => s.alias),
        seeds.map((s) => s.group),
        variants.map((v) => v.url),
        variants.map((v) => v.realm),
        encoding.origin,
        encoding.budget,
        retentionMs,
        channel,
        fenceWaitMs,
        syncChannel,
        syncOrigin ?? null,
      ],
      { readCommitted: true },
    );
    if (rows.length === 0) throw new ModuleCacheSchemaError(messages.noStatusRow('module_cache_invalidate_many'));
    const urls = new Map(rows.map((r) => [Number(r.grp), r.urls ? r.urls.split('\n') : []]));
    return { urls, seq: rows[0].seq, sent: rows[0].payloads };
  }

  /**
   * The same inside one explicit transaction, for payloads this process must encode (signed):
   * fan-out, delete and fence log first, then the NOTIFYs encoded from what was deleted (and the
   * sync marker, whose signed halves `syncMarker` builds from the sequence), then COMMIT.
   * `onAffected` runs synchronously as soon as the fan-out is known, with every deleted row; the
   * result has them per caller group too.
   */
  async invalidateFenced({
    seeds,
    onAffected,
    syncMarker,
  }: {
    seeds: Array<{ alias: string; group: number }>;
    onAffected: PayloadBuilder<InvalidatedRow[]>;
    syncMarker?: (seq: string) => { before: string; after: string };
  }): Promise<{ rows: Map<number, InvalidatedRow[]>; seq: string }> {
    const { channel, retentionMs, fenceWaitMs } = this.config;
    const syncChannel = this.controlChannel;
    return this.sql.readCommittedTransaction(async (query) => {
      const result = await query<InvalidatedRow & { grp: number | null; seq: string | null }>(INVALIDATE_FENCED, [
        seeds.map((s) => s.alias),
        seeds.map((s) => s.group),
        retentionMs,
        fenceWaitMs,
      ]);
      const status = result.at(-1);
      // The function always ends with its status row: without one it is not the function this version calls.
      if (!status || status.url !== null || status.seq === null) {
        throw new ModuleCacheSchemaError(messages.noStatusRow('module_cache_invalidate_fenced'));
      }
      const byGroup = new Map<number, InvalidatedRow[]>();
      const distinct = new Map<string, InvalidatedRow>();
      for (const row of result.slice(0, -1)) {
        const deleted = { url: row.url, realm: row.realm, alias: row.alias };
        const group = Number(row.grp);
        const rows = byGroup.get(group);
        if (rows) rows.push(deleted);
        else byGroup.set(group, [deleted]);
        distinct.set(`${deleted.realm}\n${deleted.url}`, deleted);
      }
      const payloads = onAffected([...distinct.values()]);
      if (payloads.length) await query(NOTIFY_EACH, [channel, payloads]);
      if (syncMarker) {
        const { before, after } = syncMarker(status.seq);
        await query(NOTIFY_SYNC, [syncChannel, before, after, status.seq]);
      }
      return { rows: byGroup, seq: status.seq };
    });
  }

  /** Deletes the rows of a realm prefix (nested realms included) and the edges nothing needs, logs it and NOTIFYs, in one statement. */
  async clearRealm({ realm, payloads, syncOrigin }: { realm: string; payloads: string[]; syncOrigin?: string }): Promise<Cleared> {
    const { channel, retentionMs, fenceWaitMs } = this.config;
    const syncChannel = this.controlChannel;
    const [row] = await this.sql.run<{ deleted: string; seq: string }>(
      CLEAR_REALM,
      [realm, retentionMs, channel, payloads, fenceWaitMs, syncChannel, syncOrigin ?? null],
      { readCommitted: true },
    );
    return { deleted: Number(row.deleted), seq: row.seq };
  }

  /** Deletes every row and edge, logs it and NOTIFYs, in one statement. */
  async clearAll({ payloads, syncOrigin }: { payloads: string[]; syncOrigin?: string }): Promise<Cleared> {
    const { channel, retentionMs, fenceWaitMs } = this.config;
    const syncChannel = this.controlChannel;
    const [row] = await this.sql.run<{ deleted: string; seq: string }>(
      CLEAR_ALL,
      [retentionMs, channel, payloads, fenceWaitMs, syncChannel, syncOrigin ?? null],
      { readCommitted: true },
    );
    return { deleted: Number(row.deleted), seq: row.seq };
  }

  /**
   * Strong consistency's sync marker of the committed invalidation `seq`, through the pool: the
   * database puts the invalidation's token between `before` and `after`.
   */
  async notifySync({ seq, before, after }: { seq: string; before: string; after: string }): Promise<void> {
    // On the control channel in 'boxel': still after the invalidation it confirms, because Postgres
    // delivers every channel's notifications from one queue, in commit order (docs/wire-format.md).
    const sent = await this.sql.run(NOTIFY_SYNC, [this.controlChannel, before, after, seq]);
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
      await query(NOTIFY, [this.controlChannel, marker]);
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
    const [row] = await this.sql.run<{ seq: string }>(PROBE, [this.controlChannel, payload]);
    return row.seq;
  }

  /** One NOTIFY on the control channel through the pool: the path peers' invalidations take. */
  async notify(payload: string): Promise<void> {
    await this.sql.run(NOTIFY, [this.controlChannel, payload]);
  }

  private get controlChannel(): string {
    return this.config.controlChannel ?? this.config.channel;
  }

  /** Fraction (0..1) of the server's NOTIFY queue in use. */
  async notifyQueueUsage(): Promise<number> {
    const [row] = await this.sql.run<{ usage: number }>(NOTIFY_QUEUE_USAGE, []);
    return Number(row?.usage ?? 0);
  }
}
