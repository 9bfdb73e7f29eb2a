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

  @Column({ type: 'jsonb' })
  definitions!: Record<string, unknown>;

  @Column({ type: 'text', array: true })
  deps!: string[];

  @Column({ type: 'jsonb', nullable: true })
  error!: Record<string, unknown> | null;

  @Column({ type: 'jsonb', nullable: true })
  diagnostics!: Record<string, unknown> | null;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}

@Entity({ name: 'module_cache_dependencies', synchronize: false })
export class ModuleCacheDependencyEntity {
  @PrimaryColumn({ name: 'url_hash', type: 'uuid' })
  urlHash!: string;

  @PrimaryColumn({ type: 'text' })
  scope!: string;

  @PrimaryColumn({ name: 'dep_alias_hash', type: 'uuid' })
  depAliasHash!: string;

  @Column({ name: 'consumer_alias_hash', type: 'uuid' })
  consumerAliasHash!: string;
}

@Entity({ name: 'module_cache_invalidations', synchronize: false })
export class ModuleCacheInvalidationEntity {
  @PrimaryColumn({ type: 'text' })
  kind!: 'module' | 'realm' | 'global';

  @PrimaryColumn({ name: 'key_hash', type: 'uuid' })
  keyHash!: string;

  @Column({ type: 'bigint' })
  seq!: string;

  @Column({ name: 'invalidated_at', type: 'timestamptz' })
  invalidatedAt!: Date;
}
