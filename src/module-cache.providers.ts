import type { Provider } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import {
  LISTENER_CONFIG,
  ModuleCacheInvalidationListener,
  NOTIFICATION_TRANSPORT,
  PROBE_SENDER,
  type ListenerConfig,
  type ProbeSender,
} from './broadcast/invalidation-listener';
import { ListenConnection, type NotificationTransport } from './broadcast/listen-connection';
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
import { dedicatedConnectionConfig } from './persistence/dedicated-connection-config';
import { ModuleCacheRepository } from './persistence/module-cache.repository';
import type { DefinitionSource } from './types';

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
    // The process's one dedicated connection: invalidations, wake-ups and claims.
    provide: NOTIFICATION_TRANSPORT,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, MODULE_CACHE_DATA_SOURCE],
    useFactory: (options: ResolvedModuleCacheOptions, dataSource: DataSource): NotificationTransport | null => {
      if (options.listener === false) return null;
      return new ListenConnection({
        connection: options.listener.connection ?? dedicatedConnectionConfig(dataSource),
        applicationName: options.listener.applicationName,
        channels: options.coalesceAcrossProcesses ? [options.channel, options.computedChannel] : [options.channel],
        reconnect: options.listener.reconnect,
        queryTimeoutMs: options.listener.queryTimeoutMs,
      });
    },
  },
  {
    provide: LISTENER_CONFIG,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, MODULE_CACHE_ORIGIN],
    useFactory: (options: ResolvedModuleCacheOptions, origin: string): ListenerConfig | null =>
      options.listener === false
        ? null
        : { channel: options.channel, signingSecret: options.signingSecret, origin, heartbeat: options.listener.heartbeat },
  },
  {
    // Probes take the path peers' invalidations take: a NOTIFY through the DataSource's pool.
    provide: PROBE_SENDER,
    inject: [MODULE_CACHE_REPOSITORY],
    useFactory:
      (repository: ModuleCacheRepository): ProbeSender =>
      (channel, payload) =>
        repository.notify(channel, payload),
  },
  {
    provide: ModuleCacheInvalidationListener,
    inject: [LISTENER_CONFIG, NOTIFICATION_TRANSPORT, PROBE_SENDER],
    useFactory: (config: ListenerConfig | null, transport: NotificationTransport | null, probe: ProbeSender) =>
      config && transport ? new ModuleCacheInvalidationListener(config, transport, probe) : null,
  },
  {
    provide: MODULE_CACHE_COORDINATOR,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, NOTIFICATION_TRANSPORT, MODULE_CACHE_ORIGIN],
    useFactory: (options: ResolvedModuleCacheOptions, transport: NotificationTransport | null, origin: string) => {
      // Waiters are woken through the dedicated connection: without one there is nothing to coalesce with.
      if (!options.coalesceAcrossProcesses || !transport) return null;
      return new PopulateCoordinator(
        {
          computedChannel: options.computedChannel,
          origin,
          waitTimeoutMs: options.coalesceWaitTimeoutMs,
          takeoverCheckMs: options.coalesceTakeoverCheckMs,
        },
        transport,
      );
    },
  },
];
