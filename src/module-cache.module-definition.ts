import { ConfigurableModuleBuilder } from '@nestjs/common';
import { getDataSourceToken } from '@nestjs/typeorm';
import { MODULE_CACHE_DATA_SOURCE } from './module-cache.constants';
import type { ModuleCacheOptions } from './config/options';

/**
 * `isGlobal` and `dataSourceName` are "extras": known when the module is declared (also for
 * forRootAsync), because the DataSource to inject must be a static token.
 */
export const { ConfigurableModuleClass: ConfigurableModuleCacheModule, MODULE_OPTIONS_TOKEN: MODULE_CACHE_OPTIONS } =
  new ConfigurableModuleBuilder<ModuleCacheOptions>({ moduleName: 'ModuleCache' })
    .setClassMethodName('forRoot')
    .setExtras<{ isGlobal?: boolean; dataSourceName?: string }>({ isGlobal: false, dataSourceName: undefined }, (definition, extras) => ({
      ...definition,
      global: extras.isGlobal,
      providers: [
        ...(definition.providers ?? []),
        { provide: MODULE_CACHE_DATA_SOURCE, useExisting: getDataSourceToken(extras.dataSourceName) },
      ],
    }))
    .build();
