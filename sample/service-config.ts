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
  /** The folder of modules to serve; defaults to the repository's sample realm. */
  realmDir: string;
  /** The URL `realmDir` is served at; module URLs are under it. */
  realmURL: string;
  /** Unset: the primary starts an embedded Postgres. */
  databaseURL?: string;
}

/**
 * The sample's own folder: `sample/` under ts-node, and also when built (`dist-sample/sample/`
 * is compiled from it), so the sample realm is found from either without copying it.
 */
export const SAMPLE_DIR =
  path.basename(path.resolve(__dirname, '..')) === 'dist-sample' ? path.resolve(__dirname, '..', '..', 'sample') : __dirname;

export function readServiceConfig(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const port = integer(env, 'PORT', 3000, 1, 65_535);
  const host = env.HOST || '127.0.0.1';
  const workers = integer(env, 'WORKERS', 2, 1, 64);
  const realmDir = path.resolve(env.REALM_DIR || path.join(SAMPLE_DIR, 'realms', 'realm'));
  const realmURL = env.REALM_URL || `http://localhost:${port}/realm/`;
  if (!URL.canParse(realmURL) || !realmURL.endsWith('/') || !/^https?:$/.test(new URL(realmURL).protocol)) {
    throw new Error(`REALM_URL must be an absolute http(s) URL ending with "/", got ${JSON.stringify(realmURL)}`);
  }
  // The lookup compares canonical URLs: `http://LOCALHOST:3000/realm/` must match what it computes.
  return { port, host, workers, realmDir, realmURL: new URL(realmURL).href, databaseURL: env.DATABASE_URL || undefined };
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
