import { CreateModuleCache1764000000000 } from './migrations/1764000000000-create-module-cache';
import { ModuleCacheDependencyEntity, ModuleCacheEntryEntity, ModuleCacheInvalidationEntity } from './module-cache.entity';

/** Hand these to your TypeORM DataSource (`entities`). */
export const moduleCacheEntities = [ModuleCacheEntryEntity, ModuleCacheDependencyEntity, ModuleCacheInvalidationEntity];
/** Hand these to your TypeORM DataSource (`migrations`) and run them (`migrationsRun: true` or the CLI). */
export const moduleCacheMigrations = [CreateModuleCache1764000000000];

export { ModuleCacheDependencyEntity, ModuleCacheEntryEntity, ModuleCacheInvalidationEntity, CreateModuleCache1764000000000 };
