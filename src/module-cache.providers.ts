import { Logger, type OnModuleInit, type Provider } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { Coalescer } from './coalescing/coalescer';
import { controlChannelFor } from './config/fields';
import { resolveModuleCacheOptions, type ResolvedModuleCacheOptions } from './config/options';
import { dedicatedConnectionConfig } from './connection/connection-config';
import type { DedicatedConnection } from './connection/dedicated-connection';
import { PgDedicatedConnection } from './connection/pg-connection';
import { RelayedConnection } from './connection/relayed-connection';
import { Membership } from './consistency/membership';
import { ModuleCacheOptionsError, NoModuleListingError } from './errors';
import { Recorder } from './events/recorder';
import { messages } from './messages';
import {
  DEFINITION_SOURCE,
  MODULE_CACHE_COALESCER,
  MODULE_CACHE_DATA_SOURCE,
  MODULE_CACHE_DEDICATED_CONNECTION,
  MODULE_CACHE_MEMBERSHIP,
  MODULE_CACHE_ORIGIN,
  MODULE_CACHE_RECORDER,
  MODULE_CACHE_ENTRIES,
  MODULE_CACHE_INVALIDATIONS,
  MODULE_CACHE_SQL,
  RESOLVED_DEFINITION_SOURCE,
  RESOLVED_MODULE_CACHE_OPTIONS,
} from './module-cache.constants';
import { ModuleCacheInvalidationListener } from './listener/invalidation-listener';
import { MODULE_CACHE_OPTIONS } from './module-cache.module-definition';
import { EntryStore } from './persistence/entries';
import { InvalidationStore } from './persistence/invalidations';
import { PeerStore } from './persistence/peers';
import { SqlRunner } from './persistence/sql';
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

  /** The application's source's listing; the same error as for a source without one when it has none. */
  async listModules(...args: Parameters<NonNullable<DefinitionSource['listModules']>>): Promise<string[]> {
    if (!this.source) throw new ModuleCacheOptionsError(messages.noSource());
    if (typeof this.source.listModules !== 'function') throw new NoModuleListingError(messages.noModuleListing(args[0]));
    return this.source.listModules(...args);
  }
}

/** The options resolved once per module instance, with one warning for a deprecated spelling. */
function resolveOptionsAtStartup(options: unknown): ResolvedModuleCacheOptions {
  const resolved = resolveModuleCacheOptions(options);
  if ((options as { wireFormat?: unknown }).wireFormat === 'seed') new Logger('ModuleCacheModule').warn(messages.wireFormatSeed());
  return resolved;
}

export const moduleCacheProviders: Provider[] = [
  { provide: RESOLVED_MODULE_CACHE_OPTIONS, useFactory: resolveOptionsAtStartup, inject: [MODULE_CACHE_OPTIONS] },
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
    provide: MODULE_CACHE_SQL,
    inject: [MODULE_CACHE_DATA_SOURCE, RESOLVED_MODULE_CACHE_OPTIONS],
    useFactory: (dataSource: DataSource, options: ResolvedModuleCacheOptions) => {
      const type = (dataSource.options as { type: string }).type;
      if (type !== 'postgres') throw new ModuleCacheOptionsError(messages.notPostgres(type));
      return new SqlRunner(dataSource, { preparedStatements: options.preparedStatements });
    },
  },
  {
    provide: MODULE_CACHE_ENTRIES,
    inject: [MODULE_CACHE_SQL, RESOLVED_MODULE_CACHE_OPTIONS],
    useFactory: (sql: SqlRunner, options: ResolvedModuleCacheOptions) =>
      new EntryStore(sql, { errorTtlMs: options.errorTtlMs, fenceWaitMs: options.fenceWaitMs }),
  },
  {
    provide: MODULE_CACHE_INVALIDATIONS,
    inject: [MODULE_CACHE_SQL, RESOLVED_MODULE_CACHE_OPTIONS],
    useFactory: (sql: SqlRunner, options: ResolvedModuleCacheOptions) =>
      new InvalidationStore(sql, {
        channel: options.channel,
        controlChannel: controlChannelFor(options),
        retentionMs: options.fenceRetentionMs,
        fenceWaitMs: options.fenceWaitMs,
      }),
  },
  {
    // The process's one dedicated connection: invalidations, wake-ups and claims.
    provide: MODULE_CACHE_DEDICATED_CONNECTION,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, MODULE_CACHE_DATA_SOURCE],
    useFactory: (options: ResolvedModuleCacheOptions, dataSource: DataSource): DedicatedConnection | null => {
      if (options.listener === false) return null;
      const control = controlChannelFor(options);
      const channels = [
        options.channel,
        ...(control === options.channel ? [] : [control]),
        ...(options.coalesceAcrossProcesses ? [options.computedChannel] : []),
        ...(options.consistency === 'strong' ? [options.ackChannel] : []),
      ];
      // Relay mode: the node:cluster primary's connection, over IPC.
      if (options.listener.relay) return new RelayedConnection({ channels, queryTimeoutMs: options.listener.queryTimeoutMs });
      return new PgDedicatedConnection({
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
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, MODULE_CACHE_SQL, MODULE_CACHE_DEDICATED_CONNECTION, MODULE_CACHE_ORIGIN],
    useFactory: (options: ResolvedModuleCacheOptions, sql: SqlRunner, connection: DedicatedConnection | null, origin: string) => {
      if (options.consistency !== 'strong' || !connection || options.listener === false) return null;
      const member = {
        id: origin,
        applicationName: options.listener.applicationName,
        leaseMs: options.leaseMs,
        ackChannel: options.ackChannel,
      };
      return new Membership(member, new PeerStore(sql, member), connection);
    },
  },
  {
    provide: ModuleCacheInvalidationListener,
    inject: [
      RESOLVED_MODULE_CACHE_OPTIONS,
      MODULE_CACHE_DEDICATED_CONNECTION,
      MODULE_CACHE_INVALIDATIONS,
      MODULE_CACHE_ORIGIN,
      MODULE_CACHE_MEMBERSHIP,
    ],
    useFactory: (
      options: ResolvedModuleCacheOptions,
      connection: DedicatedConnection | null,
      invalidations: InvalidationStore,
      origin: string,
      membership: Membership | null,
    ) =>
      options.listener === false || !connection
        ? null
        : new ModuleCacheInvalidationListener(
            {
              channel: options.channel,
              controlChannel: controlChannelFor(options),
              signingSecret: options.signingSecret,
              origin,
              heartbeat: options.listener.heartbeat,
              prefixes: options.prefixes,
              // Strong consistency: the lease is renewed before each probe, which then proves it current.
              ...(membership ? { beforeProbe: () => membership.renew() } : {}),
              // A reconnect replays the fence log; its wait for the fence lock is bounded by the heartbeat timeout.
              replay: {
                read: (after, marker) =>
                  invalidations.replaySince({ after, marker, lockTimeoutMs: options.listener ? options.listener.heartbeat.timeoutMs : 0 }),
                timeoutMs: 2 * options.listener.heartbeat.timeoutMs,
              },
            },
            connection,
            // Probes take the path peers' invalidations take: a NOTIFY through the DataSource's pool
            // (on the listener's control channel, which is the store's), with the watermark of its snapshot.
            (_channel, payload) => invalidations.probe(payload),
          ),
  },
  {
    provide: MODULE_CACHE_COALESCER,
    inject: [RESOLVED_MODULE_CACHE_OPTIONS, MODULE_CACHE_DEDICATED_CONNECTION, MODULE_CACHE_ORIGIN, MODULE_CACHE_RECORDER],
    useFactory: (options: ResolvedModuleCacheOptions, connection: DedicatedConnection | null, origin: string, recorder: Recorder) => {
      // Waiters are woken through the dedicated connection: without one there is nothing to coalesce with.
      if (!options.coalesceAcrossProcesses || !connection) return null;
      return new Coalescer(
        {
          computedChannel: options.computedChannel,
          origin,
          waitTimeoutMs: options.coalesceWaitTimeoutMs,
          takeoverCheckMs: options.coalesceTakeoverCheckMs,
        },
        connection,
        recorder,
      );
    },
  },
];
