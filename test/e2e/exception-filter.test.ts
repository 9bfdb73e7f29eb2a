import { Controller, Get, Param, Query, type INestApplication } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CachingDefinitionLookup,
  MODULE_CACHE_HTTP_STATUS,
  ModuleCacheExceptionFilter,
  ModuleCacheModule,
  ModuleNotFoundError,
  moduleCacheEntities,
} from '../../src';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { everyModuleCacheError } from '../support/error-classes';
import { FakeSource } from '../support/fake-source';

/**
 * The exported filter in a real HTTP app (Express, as Nest's default): the README's controller on
 * a real database, answering the library's errors with their statuses and one body shape.
 */
const REALM = 'https://filter.test/realm/';
const errors = everyModuleCacheError();

@Controller()
class DefinitionsController {
  constructor(private readonly lookup: CachingDefinitionLookup) {}

  @Get('definitions')
  async definitions(@Query('url') url: string, @Query('scope') scope?: string) {
    const entry = await this.lookup.lookup(url, { scope });
    if (!entry) throw new ModuleNotFoundError(url);
    return entry;
  }

  @Get('definition')
  definition(@Query('url') url: string, @Query('name') name: string) {
    return this.lookup.lookupDefinition(url, name);
  }

  @Get('throw/:code')
  throw(@Param('code') code: string) {
    throw errors.find((error) => error.code === code);
  }
}

describe('ModuleCacheExceptionFilter in an HTTP app', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let base: string;
  const source = new FakeSource().define(`${REALM}a.ts`).set(`${REALM}throws.ts`, () => {
    throw new Error('the prerenderer crashed');
  });
  const get = async (path: string) => {
    const response = await fetch(`${base}${path}`);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    await migrate(db.url);
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ type: 'postgres', url: db.url, entities: moduleCacheEntities, retryAttempts: 1 }),
        ModuleCacheModule.forRoot({ realms: [REALM], source, listener: false }),
      ],
      controllers: [DefinitionsController],
      providers: [{ provide: APP_FILTER, useClass: ModuleCacheExceptionFilter }],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    base = await app.getUrl();
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('answers a lookup, and each way a lookup can fail with its status and { statusCode, code, message }', async () => {
    expect(await get(`/definitions?url=${encodeURIComponent(`${REALM}a.ts`)}`)).toMatchObject({
      status: 200,
      body: { url: `${REALM}a.ts` },
    });
    const cases: [string, number, string, RegExp][] = [
      ['/definitions', 400, 'E_INVALID_MODULE_URL', /module URL/],
      ['/definitions?url=not-a-url', 400, 'E_INVALID_MODULE_URL', /not an absolute URL/],
      [`/definitions?url=${encodeURIComponent(`${REALM}a.ts`)}&scope=%00`, 400, 'E_INVALID_SCOPE', /scope/],
      [`/definitions?url=${encodeURIComponent('https://elsewhere.test/a.ts')}`, 404, 'E_UNKNOWN_REALM', /not inside any registered realm/],
      [`/definitions?url=${encodeURIComponent(`${REALM}nothing-here`)}`, 404, 'E_MODULE_NOT_FOUND', /no module at/],
      [`/definition?url=${encodeURIComponent(`${REALM}a.ts`)}&name=nope`, 404, 'E_DEFINITION_NOT_FOUND', /"nope"/],
      [`/definitions?url=${encodeURIComponent(`${REALM}throws.ts`)}`, 502, 'E_SOURCE_FAILED', /the prerenderer crashed/],
    ];
    for (const [path, status, code, message] of cases) {
      const answer = await get(path);
      expect({ path, status: answer.status, keys: Object.keys(answer.body).sort() }).toEqual({
        path,
        status,
        keys: ['code', 'message', 'statusCode'],
      });
      expect(answer.body).toMatchObject({ statusCode: status, code });
      expect(answer.body.message).toMatch(message);
    }
  });

  it('answers every code src/errors.ts declares with the status of the table', async () => {
    for (const error of errors) {
      const answer = await get(`/throw/${error.code}`);
      expect(answer).toEqual({
        status: MODULE_CACHE_HTTP_STATUS[error.code],
        body: { statusCode: MODULE_CACHE_HTTP_STATUS[error.code], code: error.code, message: error.message },
      });
    }
  });
});
