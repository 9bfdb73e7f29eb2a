import { CreateModuleCache1764000000000 } from './migrations/1764000000000-create-module-cache';
import { FenceWatermarks1764100000000 } from './migrations/1764100000000-fence-watermarks';
import { Peers1764200000000 } from './migrations/1764200000000-peers';
import { OneStatementInvalidation1764300000000 } from './migrations/1764300000000-one-statement-invalidation';
import { SyncTokens1764400000000 } from './migrations/1764400000000-sync-tokens';
import { JsonDocuments1764500000000 } from './migrations/1764500000000-json-documents';
import { DropRealmHash1764600000000 } from './migrations/1764600000000-drop-realm-hash';
import { PartitionedFence1764700000000 } from './migrations/1764700000000-partitioned-fence';
import {
  ModuleCacheEdgeEntity,
  ModuleCacheEntryEntity,
  ModuleCacheFenceEntity,
  ModuleCacheFenceLogEntity,
  ModuleCachePeerEntity,
} from './module-cache.entity';

/** Hand these to your TypeORM DataSource (`entities`). */
export const moduleCacheEntities = [
  ModuleCacheEntryEntity,
  ModuleCacheEdgeEntity,
  ModuleCacheFenceEntity,
  ModuleCacheFenceLogEntity,
  ModuleCachePeerEntity,
];
/**
 * Hand these to your TypeORM DataSource (`migrations`) and run them (`migrationsRun: true` or the CLI).
 *
 * Migrations are frozen: each one holds the text of every statement it runs and imports only
 * TypeORM types, so that editing one can never change what another runs on a database that has
 * not applied it yet. A change to the schema is a new migration (and a new `npm run db:dump`).
 */
export const moduleCacheMigrations = [
  CreateModuleCache1764000000000,
  FenceWatermarks1764100000000,
  Peers1764200000000,
  OneStatementInvalidation1764300000000,
  SyncTokens1764400000000,
  JsonDocuments1764500000000,
  DropRealmHash1764600000000,
  PartitionedFence1764700000000,
];
