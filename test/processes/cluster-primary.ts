/**
 * A node:cluster primary for tests: starts a ModuleCacheClusterRelay (the host's only dedicated
 * connection), forks CLUSTER_WORKERS workers running worker.ts in relay mode, and passes the
 * test's commands to them (and their answers back) over its own IPC channel.
 */
import 'reflect-metadata';
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import { ModuleCacheClusterRelay } from '../../src/cluster';

const databaseUrl = process.env.DATABASE_URL!;
const count = Number(process.env.CLUSTER_WORKERS ?? 2);
const relayName = process.env.RELAY_APPLICATION_NAME ?? 'mc-test-relay';
/** The relay LISTENs on what its workers need: their wire format decides whether that includes the control channel. */
const { wireFormat } = JSON.parse(process.env.WORKER_OPTIONS ?? '{}') as { wireFormat?: 'module-cache' | 'boxel' | 'seed' };

async function main(): Promise<void> {
  const relay = new ModuleCacheClusterRelay({
    connection: { connectionString: databaseUrl },
    applicationName: relayName,
    reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
    ...(wireFormat ? { wireFormat } : {}),
  });
  await relay.start();
  cluster.setupPrimary({ exec: join(__dirname, 'worker.ts'), execArgv: ['-r', 'ts-node/register/transpile-only'] });
  const workers: Worker[] = [];
  let ready = 0;
  const pids: number[] = [];
  for (let i = 0; i < count; i++) {
    const worker = cluster.fork({ WORKER_NAME: `c${i}` });
    workers.push(worker);
    worker.on('message', (message: { ready?: boolean; pid?: number; id?: number; moduleCacheRelay?: number }) => {
      // The relay's own traffic shares the channel (and numbers its requests too): not an answer.
      if (message?.moduleCacheRelay !== undefined) return;
      if (message?.ready) {
        pids[i] = message.pid!;
        if (++ready === count) process.send!({ ready: true, pids });
      } else if (typeof message?.id === 'number') {
        process.send!({ ...message, worker: i });
      }
    });
  }
  process.on('message', (message: { worker: number; id: number; cmd: string; args: unknown[] }) => {
    const target = workers[message.worker];
    if (target?.isConnected()) target.send({ id: message.id, cmd: message.cmd, args: message.args });
  });
  const stop = async () => {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            w.once('exit', () => resolve());
            w.send({ id: 0, cmd: 'exit', args: [] });
          }),
      ),
    );
    await relay.stop();
    process.exit(0);
  };
  process.on('disconnect', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch((error) => {
  console.error('[cluster primary] failed:', error);
  process.exit(1);
});
