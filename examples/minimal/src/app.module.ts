import { Body, Controller, Get, HttpCode, Module, Post, Query } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import {
  CachingDefinitionLookup,
  ModuleCacheExceptionFilter,
  ModuleCacheModule,
  ModuleNotFoundError,
  moduleCacheEntities,
  moduleCacheMigrations,
  type ModuleCacheEntry,
} from '@module-cache/nestjs';
import { REALM, source } from './source.js';

@Controller()
export class DefinitionsController {
  constructor(private readonly lookup: CachingDefinitionLookup) {}

  /** GET /definitions?url=…: memory → table → computed and persisted; 404 when there is no such module. */
  @Get('definitions')
  async definitions(@Query('url') url: string): Promise<ModuleCacheEntry> {
    const entry = await this.lookup.lookup(url);
    if (!entry) throw new ModuleNotFoundError(url);
    return entry;
  }

  /** POST /invalidate {"url": …}: the module and its consumers, in this process and every peer. */
  @Post('invalidate')
  @HttpCode(200)
  async invalidate(@Body() body: { url?: string } | undefined): Promise<{ invalidated: string[] }> {
    return { invalidated: await this.lookup.invalidate(body?.url ?? '') };
  }
}

@Module({
  imports: [
    TypeOrmModule.forRoot({
      type: 'postgres',
      url: process.env.DATABASE_URL,
      entities: moduleCacheEntities,
      migrations: moduleCacheMigrations,
      migrationsRun: true,
    }),
    ModuleCacheModule.forRoot({ realms: [REALM], source }),
  ],
  controllers: [DefinitionsController],
  // Library errors as { statusCode, code, message }: 400 bad input, 404 unknown realm or module, 503 database down.
  providers: [{ provide: APP_FILTER, useClass: ModuleCacheExceptionFilter }],
})
export class AppModule {}
