import { statSync } from 'node:fs';
import path from 'node:path';

/** Everything the service reads from its environment, validated once, with defaults. */
export interface ServiceConfig {
  port: number;
  /**
   * The interface to listen on: 127.0.0.1 unless HOST widens it. The service has no
   * authentication, and POST /invalidate, /realms/clear and /clear change every worker's cache.
   */
  host: string;
  workers: number;
  /** One subfolder per realm (see realm-layout.ts); defaults to the repository's sample realms. */
  realmsDir: string;
  /** The URL `realmsDir` is served at: subfolder `x` is the realm `${realmsURL}x/`. */
  realmsURL: string;
  /** Unset: the primary starts an embedded Postgres. */
  databaseURL?: string;
  /** RELAY (default 1): the primary holds the one dedicated connection and relays it to the workers (@module-cache/nestjs/cluster). 0: one per worker. */
  relay: boolean;
  /** CONSISTENCY (default eventual): `strong` makes invalidate() wait for every live worker's acknowledgement. */
  consistency: 'eventual' | 'strong';
}

/**
 * The sample's own folder: `sample/` under ts-node, and also when built (`dist-sample/sample/`
 * is compiled from it), so the sample realm is found from either without copying it.
 */
export const SAMPLE_DIR =
  path.basename(path.resolve(__dirname, '..')) === 'dist-sample' ? path.resolve(__dirname, '..', '..', 'sample') : __dirname;

/** The one line the service stops with when it cannot listen on PORT (`code`: the listen error's). */
export function portProblem({ port, host }: Pick<ServiceConfig, 'port' | 'host'>, code: string | undefined): string {
  return code === 'EACCES'
    ? `PORT ${port} on ${host} needs privileges this process does not have: set PORT to another port`
    : `PORT ${port} on ${host} is already in use: stop what listens there or set PORT to a free port`;
}

export function readServiceConfig(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const port = integer(env, 'PORT', 3000, 1, 65_535);
  const host = env.HOST || '127.0.0.1';
  const workers = integer(env, 'WORKERS', 2, 1, 64);
  // Silently ignoring the single-realm settings would serve something else than asked for.
  for (const old of ['REALM_DIR', 'REALM_URL'] as const) {
    if (env[old]) throw new Error(`${old} is gone: set REALMS_DIR (a folder with one subfolder per realm) and REALMS_URL (their base URL)`);
  }
  const realmsDir = path.resolve(env.REALMS_DIR || path.join(SAMPLE_DIR, 'realms'));
  if (!statSync(realmsDir, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`REALMS_DIR must be a folder, got ${realmsDir}`);
  const realmsURL = env.REALMS_URL || `http://localhost:${port}/`;
  if (!URL.canParse(realmsURL) || !realmsURL.endsWith('/') || !/^https?:$/.test(new URL(realmsURL).protocol) || /[?#]/.test(realmsURL)) {
    throw new Error(`REALMS_URL must be an absolute http(s) URL ending with "/" (no query or hash), got ${JSON.stringify(realmsURL)}`);
  }
  // The lookup compares canonical URLs: `http://LOCALHOST:3000/` must match what it computes.
  const relay = choice(env, 'RELAY', ['1', '0'] as const, '1') === '1';
  const consistency = choice(env, 'CONSISTENCY', ['eventual', 'strong'] as const, 'eventual');
  return {
    port,
    host,
    workers,
    realmsDir,
    realmsURL: new URL(realmsURL).href,
    databaseURL: env.DATABASE_URL || undefined,
    relay,
    consistency,
  };
}

function choice<T extends string>(env: NodeJS.ProcessEnv, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!allowed.includes(raw as T)) throw new Error(`${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
  return raw as T;
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}
