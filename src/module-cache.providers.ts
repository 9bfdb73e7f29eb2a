import type { Provider } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import type { ClientConfig } from 'pg';
import type { DataSource } from 'typeorm';
import { LISTENER_CONFIG, ModuleCacheInvalidationListener, type ListenerConfig } from './broadcast/invalidation-listener';
import { PopulateCoordinator } from './coordination/populate-coordinator';
import { ModuleCacheOptionsError } from './errors';
import { messages } from './messages';
import {
  DEFINITION_SOURCE,
  MODULE_CACHE_COORDINATOR,
  MODULE_CACHE_DATA_SOURCE,
  MODULE_CACHE_ORIGIN,
  MODULE_CACHE_REPOSITORY,
  RESOLVED_DEFINITION_SOURCE,
  RESOLVED_MODULE_CACHE_OPTIONS,
} from './module-cache.constants';
import { MODULE_CACHE_OPTIONS } from './module-cache.module-definition';
import { resolveModuleCacheOptions, type ResolvedModuleCacheOptions } from './module-cache.options';
import { ModuleCacheRepository } from './persistence/module-cache.repository';
import type { DefinitionSource } from './types';

/** The listener's own connection settings, from options or else from the DataSource's. */
function listenerConnection(dataSource: DataSource, configured?: ClientConfig): ClientConfig {
  if (configured) return configured;
  const o = dataSource.options as { url?: string; host?: string; port?: number; username?: string; password?: string; database?: string };
  const ssl = (dataSource.options as { ssl?: ClientConfig['ssl'] }).ssl;
  return {
    ...(o.url ? { connectionString: o.url } : {}),
    ...(o.host ? { host: o.host } : {}),
    ...(o.port ? { port: o.port } : {}),
    ...(o.username ? { user: o.username } : {}),
    ...(typeof o.password === 'string' ? { password: o.password } : {}),
    ...(o.database ? { database: o.database } : {}),
    ...(ssl ? { ssl } : {}),
  };
}

export const moduleCacheProviders: Provider[] = [
  { provide: RESOLVED_MODULE_CACHE_OPTIONS, useFactory: resolveModuleCacheOptions, inject: [MODULE_CACHE_OPTIONS] },
  { provide: MODULE_CACHE_ORIGIN, useFactory: () => randomUUID() },
  {
    provide: RESOLVED_DEFINITION_SOURCE,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, ModuleRef],
    useFactory: (options: ResolvedModuleCacheOptions, moduleRef: ModuleRef): DefinitionSource => {
      if (options.source) return options.source;
      try {
        return moduleRef.get<DefinitionSource>(DEFINITION_SOURCE, { strict: false });
      } catch {
        throw new ModuleCacheOptionsError(messages.noSource());
      }
    },
  },
  {
    provide: MODULE_CACHE_REPOSITORY,
    inject: [MODULE_CACHE_DATA_SOURCE],
    useFactory: (dataSource: DataSource) => new ModuleCacheRepository(dataSource),
  },
  {
    provide: LISTENER_CONFIG,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, MODULE_CACHE_DATA_SOURCE, MODULE_CACHE_ORIGIN],
    useFactory: (options: ResolvedModuleCacheOptions, dataSource: DataSource, origin: string): ListenerConfig | null => {
      if (options.listener === false) return null;
      return {
        connection: listenerConnection(dataSource, options.listener.connection),
        channel: options.channel,
        extraChannels: options.coalesceAcrossProcesses ? [options.computedChannel] : [],
        applicationName: options.listener.applicationName,
        reconnect: options.listener.reconnect,
        selfProbeTimeoutMs: options.listener.selfProbeTimeoutMs,
        signingSecret: options.signingSecret,
        origin,
      };
    },
  },
  {
    provide: ModuleCacheInvalidationListener,
    inject: [LISTENER_CONFIG],
    useFactory: (config: ListenerConfig | null) => (config ? new ModuleCacheInvalidationListener(config) : null),
  },
  {
    provide: MODULE_CACHE_COORDINATOR,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, LISTENER_CONFIG, ModuleCacheInvalidationListener],
    useFactory: (options: ResolvedModuleCacheOptions, config: ListenerConfig | null, listener: ModuleCacheInvalidationListener | null) => {
      // Waiters are woken through the listener: without one there is nothing to coalesce with.
      if (!options.coalesceAcrossProcesses || !config || !listener) return null;
      return new PopulateCoordinator(
        {
          connection: config.connection,
          applicationName: `${config.applicationName}-claims`.slice(0, 63),
          computedChannel: options.computedChannel,
          origin: config.origin,
          waitTimeoutMs: options.coalesceWaitTimeoutMs,
          takeoverCheckMs: options.coalesceTakeoverCheckMs,
        },
        listener.rawNotifications$,
      );
    },
  },
];
