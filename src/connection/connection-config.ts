import type { ClientConfig } from 'pg';
import type { DataSource } from 'typeorm';
import { ModuleCacheOptionsError } from '../errors';
import { messages } from '../messages';

/** pg Pool settings that mean nothing to a single client. */
const POOL_ONLY = new Set([
  'max',
  'min',
  'idleTimeoutMillis',
  'maxUses',
  'maxLifetimeSeconds',
  'allowExitOnIdle',
  'log',
  'Client',
  'Promise',
]);

interface PostgresCredentials {
  url?: string;
  host?: string;
  port?: number;
  username?: string;
  password?: ClientConfig['password'];
  database?: string;
  ssl?: ClientConfig['ssl'];
}

interface PostgresOptions extends PostgresCredentials {
  type: string;
  connectTimeoutMS?: number;
  replication?: { master: PostgresCredentials };
  extra?: Record<string, unknown>;
}

/**
 * The settings of the dedicated connection (LISTEN + claims), derived from the DataSource the way
 * TypeORM builds its pool: the replication master when there is one (notifications are sent on
 * the master), `url` or host/port/user/password/database, `ssl`, the connect timeout, then
 * `extra` on top (as TypeORM applies it), minus what only a pool understands.
 */
export function dedicatedConnectionConfig(dataSource: DataSource): ClientConfig {
  const options = dataSource.options as unknown as PostgresOptions;
  if (options.type !== 'postgres') throw new ModuleCacheOptionsError(messages.notPostgres(options.type));
  const credentials = options.replication?.master ?? options;
  const config: Record<string, unknown> = {
    connectionString: credentials.url,
    host: credentials.host,
    port: credentials.port,
    user: credentials.username,
    password: credentials.password,
    database: credentials.database,
    ssl: credentials.ssl ?? options.ssl,
    connectionTimeoutMillis: options.connectTimeoutMS,
  };
  for (const [key, value] of Object.entries(options.extra ?? {})) {
    if (!POOL_ONLY.has(key) && key !== 'application_name') config[key] = value;
  }
  return Object.fromEntries(Object.entries(config).filter(([, value]) => value !== undefined)) as ClientConfig;
}
