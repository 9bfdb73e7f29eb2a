import { Column, Entity, PrimaryColumn } from 'typeorm';

/*
 * The schema is owned by the migration (generated columns, functions, a sequence):
 * `synchronize: false` keeps TypeORM's schema sync from ever altering these tables.
 */

@Entity({ name: 'module_cache_entries', synchronize: false })
export class ModuleCacheEntryEntity {
  @PrimaryColumn({ name: 'url_hash', type: 'uuid', insert: false, update: false })
  urlHash!: string;

  @PrimaryColumn({ type: 'text' })
  scope!: string;

  @Column({ type: 'text' })
  url!: string;

  @Column({ type: 'text' })
  alias!: string;

  @Column({ name: 'alias_hash', type: 'uuid', insert: false, update: false })
  aliasHash!: string;

  @Column({ type: 'text' })
  realm!: string;

  @Column({ type: 'json' })
  definitions!: Record<string, unknown>;

  @Column({ type: 'text', array: true })
  deps!: string[];

  @Column({ type: 'json', nullable: true })
  error!: Record<string, unknown> | null;

  @Column({ type: 'json', nullable: true })
  diagnostics!: Record<string, unknown> | null;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}

/** One edge of the last known import graph, by alias: kept when the consumer's row is deleted. */
@Entity({ name: 'module_cache_edges', synchronize: false })
export class ModuleCacheEdgeEntity {
  @PrimaryColumn({ name: 'dep_alias_hash', type: 'uuid' })
  depAliasHash!: string;

  @PrimaryColumn({ name: 'consumer_alias_hash', type: 'uuid' })
  consumerAliasHash!: string;
}

/** One row: the committed watermark and the highest sequence pruned from the log. */
@Entity({ name: 'module_cache_fence', synchronize: false })
export class ModuleCacheFenceEntity {
  @PrimaryColumn({ type: 'boolean', default: true })
  id!: boolean;

  @Column({ name: 'committed_seq', type: 'bigint' })
  committedSeq!: string;

  @Column({ name: 'pruned_seq', type: 'bigint' })
  prunedSeq!: string;
}

/** One row per invalidation: a module fan-out (alias hashes), a realm prefix, or everything. */
@Entity({ name: 'module_cache_fence_log', synchronize: false })
export class ModuleCacheFenceLogEntity {
  @PrimaryColumn({ type: 'bigint' })
  seq!: string;

  @Column({ type: 'text' })
  kind!: 'module' | 'realm' | 'global';

  @Column({ type: 'text', nullable: true })
  realm!: string | null;

  @Column({ type: 'uuid', array: true, nullable: true })
  aliases!: string[] | null;

  @Column({ name: 'invalidated_at', type: 'timestamptz' })
  invalidatedAt!: Date;

  /** Random, readable once the invalidation committed: strong consistency's sync markers carry it (see SyncTokens migration). */
  @Column({ type: 'uuid', default: () => 'gen_random_uuid()' })
  token!: string;
}

/** A process in `consistency: 'strong'` mode: its lease and the highest invalidation it acknowledged. */
@Entity({ name: 'module_cache_peers', synchronize: false })
export class ModuleCachePeerEntity {
  @PrimaryColumn({ type: 'text' })
  id!: string;

  @Column({ name: 'application_name', type: 'text' })
  applicationName!: string;

  @Column({ name: 'acked_seq', type: 'bigint' })
  ackedSeq!: string;

  @Column({ name: 'lease_expires_at', type: 'timestamptz' })
  leaseExpiresAt!: Date;

  @Column({ name: 'joined_at', type: 'timestamptz' })
  joinedAt!: Date;
}
