/**
 * A separate OS process with ModuleCacheModule and a scopeFor that depends on the realm and the
 * user, driven over IPC by method name (test/e2e/scopes-processes.test.ts). Its source says in
 * every entry which scope it was computed for, so an entry served in another scope is visible.
 */
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CachingDefinitionLookup, ModuleCacheModule, moduleCacheEntities, type DefinitionSource } from '../../src';
import { PRIVATE_REALM, PUBLIC_REALM, scopeFor } from './scoped-realms';

const source: DefinitionSource = {
  async load(url, ctx) {
    // A little latency, so that concurrent calls of two processes overlap.
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
    return { definitions: { computedFor: { scope: ctx.scope, url } }, deps: [] };
  },
};

async function main(): Promise<void> {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url: process.env.DATABASE_URL, entities: moduleCacheEntities, retryAttempts: 1 }),
      ModuleCacheModule.forRoot({
        source,
        realms: [PUBLIC_REALM, PRIVATE_REALM],
        scopeFor,
        listener: { applicationName: process.env.WORKER_NAME ?? 'mc-scoped' },
      }),
    ],
  })
  class ScopedWorkerModule {}

  const app = await NestFactory.createApplicationContext(ScopedWorkerModule, { logger: false });
  const lookup = app.get(CachingDefinitionLookup);
  process.on('message', async (raw) => {
    const { id, method, args } = raw as { id: number; method: string; args: unknown[] };
    if (method === 'exit') {
      await app.close();
      process.exit(0);
    }
    try {
      const fn = (lookup as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method];
      let result = await fn.apply(lookup, args);
      if (result instanceof Map) result = Object.fromEntries(result);
      process.send!({ id, ok: true, result: result === undefined ? null : JSON.parse(JSON.stringify(result)) });
    } catch (error) {
      process.send!({ id, ok: false, error: { message: (error as Error).message, code: (error as { code?: string }).code } });
    }
  });
  process.send!({ ready: true });
}

main().catch((error) => {
  console.error('[scoped worker] failed to start:', error);
  process.exit(1);
});
