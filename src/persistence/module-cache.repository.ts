import type { DataSource } from 'typeorm';
import { EntryStore, type FencePart, type NewRow, type PersistResult, type ReadManyResult, type ReadResult } from './entries';
import { InvalidationStore, type Cleared, type InvalidatedRow, type PayloadBuilder } from './invalidations';
import { PeerStore, type PeerStoreConfig, type SyncMarker } from './peers';
import { SqlRunner } from './sql';

export { toEntry, urlHash, type FencePart, type NewRow, type PersistResult, type ReadResult, type StoredRow } from './entries';
export type { InvalidatedRow, PayloadBuilder } from './invalidations';

/**
 * Stand-ins for config fields an old-style call does not pass (its statement does not read them):
 * values the database refuses (NaN is no bigint, '' is no channel), so a slip fails loudly.
 */
const NOT_PASSED = { ms: Number.NaN, text: '' };

/**
 * The old single repository's methods and signatures (config passed on every call), delegating to
 * the stores. Each call builds the store it needs from the config it was given: a store is a few
 * field assignments, and the facade stays stateless (the READ COMMITTED fallback it learns lives
 * in the one shared SqlRunner).
 *
 * @deprecated temporary: callers move to the stores (EntryStore, InvalidationStore, PeerStore).
 */
export class ModuleCacheRepository {
  private readonly sql: SqlRunner;

  constructor(dataSource: DataSource, preparedStatements = true) {
    this.sql = new SqlRunner(dataSource, { preparedStatements });
  }

  private entries(errorTtlMs = NOT_PASSED.ms): EntryStore {
    return new EntryStore(this.sql, { errorTtlMs });
  }

  private invalidations(channel: string, retentionMs = NOT_PASSED.ms): InvalidationStore {
    return new InvalidationStore(this.sql, { channel, retentionMs });
  }

  private peers(config: Partial<PeerStoreConfig>): PeerStore {
    return new PeerStore(this.sql, {
      id: NOT_PASSED.text,
      applicationName: NOT_PASSED.text,
      leaseMs: NOT_PASSED.ms,
      ackChannel: NOT_PASSED.text,
      ...config,
    });
  }

  assertSchema(): Promise<void> {
    return this.entries().assertSchema();
  }

  read(candidates: string[], scope: string, errorTtlMs: number): Promise<ReadResult> {
    return this.entries(errorTtlMs).read({ candidates, scope });
  }

  readMany(urls: string[], scope: string, errorTtlMs: number): Promise<ReadManyResult> {
    return this.entries(errorTtlMs).readMany({ urls, scope });
  }

  readByAlias(aliases: string[], scope: string, errorTtlMs: number): Promise<ReadManyResult> {
    return this.entries(errorTtlMs).readByAlias({ aliases, scope });
  }

  persist(row: NewRow, watermark: string, parts: FencePart[]): Promise<PersistResult> {
    return this.entries().persist({ row, watermark, parts });
  }

  invalidateAndNotify(
    aliases: string[],
    knownAliasHashes: string[],
    retentionMs: number,
    channel: string,
    payloads: string[],
  ): Promise<{ done: boolean; rows: Array<InvalidatedRow & { alias_hash: string }>; seq?: string }> {
    return this.invalidations(channel, retentionMs).invalidateAndNotify({ aliases, knownAliasHashes, payloads });
  }

  invalidateEncoded(
    target: { alias: string; realm: string; variants: string[] },
    encoding: { origin: string | null; budget: number },
    retentionMs: number,
    channel: string,
  ): Promise<{ urls: string[]; seq: string; sent: number }> {
    return this.invalidations(channel, retentionMs).invalidateEncoded({ target, encoding });
  }

  invalidateModules(
    aliases: string[],
    retentionMs: number,
    channel: string,
    onAffected: PayloadBuilder<InvalidatedRow[]>,
  ): Promise<{ rows: InvalidatedRow[]; seq: string }> {
    return this.invalidations(channel, retentionMs).invalidateModules({ aliases, onAffected });
  }

  clearRealm(realm: string, retentionMs: number, channel: string, payloads: string[]): Promise<Cleared> {
    return this.invalidations(channel, retentionMs).clearRealm({ realm, payloads });
  }

  clearAll(retentionMs: number, channel: string, payloads: string[]): Promise<Cleared> {
    return this.invalidations(channel, retentionMs).clearAll({ payloads });
  }

  notifySync(channel: string, seq: string, { before, after }: { before: string; after: string }): Promise<void> {
    return this.invalidations(channel).notifySync({ seq, before, after });
  }

  notify(channel: string, payload: string): Promise<void> {
    return this.invalidations(channel).notify(payload);
  }

  notifyQueueUsage(): Promise<number> {
    return this.invalidations(NOT_PASSED.text).notifyQueueUsage();
  }

  renewLease(id: string, applicationName: string, leaseMs: number, join: boolean): Promise<void> {
    return this.peers({ id, applicationName, leaseMs }).renewLease({ join });
  }

  acknowledge(id: string, markers: SyncMarker[], ackChannel: string): Promise<string | undefined> {
    return this.peers({ id, ackChannel }).acknowledge(markers);
  }

  awaitedPeers(id: string, seq: string): Promise<{ live: number; waiting: string[]; expiresInMs: number }> {
    return this.peers({ id }).awaitedPeers(seq);
  }

  unacknowledged(ids: string[], seq: string): Promise<number> {
    return this.peers({}).unacknowledged({ ids, seq });
  }

  peerSummary(id: string): Promise<{ peers: number; lagging: number }> {
    return this.peers({ id }).peerSummary();
  }

  leave(id: string): Promise<void> {
    return this.peers({ id }).leave();
  }
}
