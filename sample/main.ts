import 'reflect-metadata';
import cluster from 'node:cluster';
import { runPrimary } from './primary';
import { readServiceConfig } from './service-config';
import { runWorker } from './worker';

/**
 * `npm start` (node dist-sample/sample/main.js): the same file runs as the primary and as each worker.
 * Environment: PORT (3000), HOST (127.0.0.1), WORKERS (2), REALMS_DIR (the repo's sample/realms/:
 * one subfolder per realm), REALMS_URL (http://localhost:PORT/: subfolder x is realm REALMS_URL/x/),
 * DATABASE_URL (unset: an embedded PostgreSQL).
 */
async function main(): Promise<void> {
  const config = readServiceConfig();
  if (cluster.isPrimary) return runPrimary(config);
  if (!config.databaseURL) throw new Error('a worker needs DATABASE_URL (the primary sets it)');
  await runWorker({ ...config, databaseURL: config.databaseURL });
}

main().catch((error: unknown) => {
  process.stderr.write(`module-cache service: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
