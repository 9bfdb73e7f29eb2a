import cluster from 'node:cluster';
import { ConsoleLogger, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { AppModule } from './app.module';
import { FATAL, READY, type WorkerMessage } from './cluster-messages';
import { answerUnparsableRequests, methodNotAllowed } from './http-errors';
import { answerMetricsCollection } from './cluster-metrics';
import { realmFiles } from './realm-files';
import { portProblem, type ServiceConfig } from './service-config';

/** Nest's start-up chatter (one line per module and route) times WORKERS drowns the URLs the primary prints. */
class QuietStartupLogger extends ConsoleLogger {
  private static readonly QUIET = new Set(['InstanceLoader', 'RoutesResolver', 'RouterExplorer', 'NestFactory', 'NestApplication']);

  override log(message: unknown, context?: string): void;
  override log(message: unknown, ...rest: unknown[]): void {
    const context = rest[rest.length - 1];
    if (typeof context === 'string' && QuietStartupLogger.QUIET.has(context)) return;
    super.log(message, ...rest);
  }
}

/** One worker: the Nest app on the shared port, until SIGTERM (from the primary) or the primary is gone. */
export async function runWorker(config: ServiceConfig & { databaseURL: string }): Promise<void> {
  const slot = Number(process.env.WORKER_SLOT ?? 0);
  const logger = new Logger('Worker');
  let closing: Promise<void> | undefined;
  const close = (why: string) =>
    (closing ??= (async () => {
      logger.log(`closing (${why})`);
      try {
        // A stop during start-up waits for it: what the start opened must be closed too.
        const app = await creating.catch(() => undefined);
        await app?.close();
        process.exit(0);
      } catch (error) {
        logger.error(`close failed: ${error instanceof Error ? error.stack : String(error)}`);
        process.exit(1);
      }
    })());
  // A terminal's Ctrl-C signals every process in its group. The primary decides the order
  // (workers first, then the database) and sends each worker SIGTERM.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => void close('SIGTERM'));
  // The IPC channel closes when the primary dies: nobody is left to restart or stop us.
  process.on('disconnect', () => void close('the primary is gone'));

  answerMetricsCollection();
  // No handler above can run before this line: they are all event callbacks.
  const creating = NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    logger: new QuietStartupLogger({ logLevels: ['log', 'error', 'warn', 'fatal'], prefix: `module-cache w${slot}` }),
    // Keep-alive and /events connections would otherwise hold app.close() open indefinitely.
    forceCloseConnections: true,
  });
  const app = await creating;
  if (closing) return;
  // Which worker answered: the end-to-end test (and a curious user) can see both serve.
  app.use((_req: unknown, res: { setHeader(name: string, value: string): void }, next: () => void) => {
    res.setHeader('x-worker', String(slot));
    res.setHeader('x-worker-pid', String(process.pid));
    next();
  });
  // Every realm's files at their module URLs' path, so a module URL also shows the source.
  app.use(new URL(config.realmsURL).pathname, realmFiles(config));
  app.use(methodNotAllowed());
  answerUnparsableRequests(app.getHttpServer());
  try {
    await app.listen(config.port, config.host);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EADDRINUSE' && code !== 'EACCES') throw error;
    // Restarting would not help: tell the primary, which stops the service with this one line.
    process.send?.({ type: FATAL, message: portProblem(config, code) } satisfies WorkerMessage);
    return void close('cannot listen');
  }
  if (!closing && cluster.isWorker) process.send?.({ type: READY, slot } satisfies WorkerMessage);
}
