import type { OnModuleInit, Provider } from '@nestjs/common';
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
import { RelayTransport } from './broadcast/relay-transport';
import { Coalescer } from './coalescing/coalescer';
import { Membership } from './consistency/membership';
import { ModuleCacheOptionsError } from './errors';
import { Recorder } from './events/recorder';
import { messages } from './messages';
import {
  DEFINITION_SOURCE,
  MODULE_CACHE_COALESCER,
  MODULE_CACHE_DATA_SOURCE,
  MODULE_CACHE_MEMBERSHIP,
  MODULE_CACHE_ORIGIN,
  MODULE_CACHE_RECORDER,
  MODULE_CACHE_REPOSITORY,
  RESOLVED_DEFINITION_SOURCE,
  RESOLVED_MODULE_CACHE_OPTIONS,
} from './module-cache.constants';
import { MODULE_CACHE_OPTIONS } from './module-cache.module-definition';
import { resolveModuleCacheOptions, type ResolvedModuleCacheOptions } from './module-cache.options';
import { dedicatedConnectionConfig } from './persistence/dedicated-connection-config';
import { ModuleCacheRepository } from './persistence/module-cache.repository';
import type { DefinitionSource } from './types';

/** The application's DEFINITION_SOURCE provider, looked up anywhere once every provider exists (onModuleInit). */
class DeferredDefinitionSource implements DefinitionSource, OnModuleInit {
  private source: DefinitionSource | undefined;

  constructor(private readonly moduleRef: ModuleRef) {}

  onModuleInit(): void {
    let found: DefinitionSource | null | undefined;
    try {
      found = this.moduleRef.get<DefinitionSource>(DEFINITION_SOURCE, { strict: false });
    } catch {
      found = undefined;
    }
    if (typeof found?.load !== 'function') throw new ModuleCacheOptionsError(messages.noSource());
    this.source = found;
  }

  load(...args: Parameters<DefinitionSource['load']>): ReturnType<DefinitionSource['load']> {
    if (!this.source) throw new ModuleCacheOptionsError(messages.noSource());
    return this.source.load(...args);
  }
}

export const moduleCacheProviders: Provider[] = [
  { provide: RESOLVED_MODULE_CACHE_OPTIONS, useFactory: resolveModuleCacheOptions, inject: [MODULE_CACHE_OPTIONS] },
  { provide: MODULE_CACHE_ORIGIN, useFactory: () => randomUUID() },
  { provide: MODULE_CACHE_RECORDER, useFactory: () => new Recorder() },
  {
    // options.source, else a DEFINITION_SOURCE provider this module can see (an import of
    // forRootAsync, or a global one), else one anywhere in the application, found once every
    // provider exists (an async factory may still be resolving while this one runs).
    provide: RESOLVED_DEFINITION_SOURCE,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, ModuleRef, { token: DEFINITION_SOURCE, optional: true }],
    useFactory: (options: ResolvedModuleCacheOptions, moduleRef: ModuleRef, visible?: DefinitionSource): DefinitionSource =>
      options.source ?? visible ?? new DeferredDefinitionSource(moduleRef),
  },
  {
    provide: MODULE_CACHE_REPOSITORY,
    inject: [MODULE_CACHE_DATA_SOURCE, RESOLVED_MODULE_CACHE_OPTIONS],
    useFactory: (dataSource: DataSource, options: ResolvedModuleCacheOptions) => {
      const type = (dataSource.options as { type: string }).type;
      if (type !== 'postgres') throw new ModuleCacheOptionsError(messages.notPostgres(type));
      return new ModuleCacheRepository(dataSource, options.preparedStatements);
    },
  },
  {
    // The process's one dedicated connection: invalidations, wake-ups and claims.
    provide: NOTIFICATION_TRANSPORT,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, MODULE_CACHE_DATA_SOURCE],
    useFactory: (options: ResolvedModuleCacheOptions, dataSource: DataSource): NotificationTransport | null => {
      if (options.listener === false) return null;
      const channels = [
        options.channel,
        ...(options.coalesceAcrossProcesses ? [options.computedChannel] : []),
        ...(options.consistency === 'strong' ? [options.ackChannel] : []),
      ];
      // Relay mode: the node:cluster primary's connection, over IPC.
      if (options.listener.relay) return new RelayTransport({ channels, queryTimeoutMs: options.listener.queryTimeoutMs });
      return new ListenConnection({
        connection: options.listener.connection ?? dedicatedConnectionConfig(dataSource),
        applicationName: options.listener.applicationName,
        channels,
        reconnect: options.listener.reconnect,
        queryTimeoutMs: options.listener.queryTimeoutMs,
      });
    },
  },
  {
    provide: MODULE_CACHE_MEMBERSHIP,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, MODULE_CACHE_REPOSITORY, NOTIFICATION_TRANSPORT, MODULE_CACHE_ORIGIN],
    useFactory: (
      options: ResolvedModuleCacheOptions,
      repository: ModuleCacheRepository,
      transport: NotificationTransport | null,
      origin: string,
    ) =>
      options.consistency === 'strong' && transport && options.listener !== false
        ? new Membership(
            { id: origin, applicationName: options.listener.applicationName, leaseMs: options.leaseMs, ackChannel: options.ackChannel },
            repository,
            transport,
          )
        : null,
  },
  {
    provide: LISTENER_CONFIG,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, MODULE_CACHE_ORIGIN, MODULE_CACHE_MEMBERSHIP],
    useFactory: (options: ResolvedModuleCacheOptions, origin: string, membership: Membership | null): ListenerConfig | null =>
      options.listener === false
        ? null
        : {
            channel: options.channel,
            signingSecret: options.signingSecret,
            origin,
            heartbeat: options.listener.heartbeat,
            // Strong consistency: the lease is renewed before each probe, which then proves it current.
            ...(membership ? { beforeProbe: () => membership.renew() } : {}),
          },
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
    provide: MODULE_CACHE_COALESCER,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, NOTIFICATION_TRANSPORT, MODULE_CACHE_ORIGIN, MODULE_CACHE_RECORDER],
    useFactory: (options: ResolvedModuleCacheOptions, transport: NotificationTransport | null, origin: string, recorder: Recorder) => {
      // Waiters are woken through the dedicated connection: without one there is nothing to coalesce with.
      if (!options.coalesceAcrossProcesses || !transport) return null;
      return new Coalescer(
        {
          computedChannel: options.computedChannel,
          origin,
          waitTimeoutMs: options.coalesceWaitTimeoutMs,
          takeoverCheckMs: options.coalesceTakeoverCheckMs,
        },
        transport,
        recorder,
      );
    },
  },
];
