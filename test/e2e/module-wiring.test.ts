import { Global, Inject, Injectable, Module, type INestApplicationContext, type ModuleMetadata } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule, getDataSourceToken } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CachingDefinitionLookup,
  DEFINITION_SOURCE,
  ModuleCacheInvalidationListener,
  ModuleCacheModule,
  ModuleCacheOptionsError,
  moduleCacheEntities,
  type ModuleCacheOptions,
} from '../../src';
import { migrate } from '../support/app';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { FakeSource } from '../support/fake-source';
import { listening, uniqueName } from '../support/listeners';
import { useCacheTestBed } from '../support/test-bed';

/**
 * How ModuleCacheModule is wired into an application: forRootAsync and isGlobal, a source provided
 * under DEFINITION_SOURCE, a named DataSource, and the refusal of a DataSource that is not PostgreSQL.
 */
const REALM = 'https://example.test/opts/';
const bed = useCacheTestBed({ realms: [REALM], listener: false });

/** Apps this file builds itself (custom module graphs): closed after each test, like the bed's. */
const opened: INestApplicationContext[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((app) => app.close()));
});

function typeOrm(url: string, name?: string) {
  return TypeOrmModule.forRoot({
    type: 'postgres',
    url,
    entities: moduleCacheEntities,
    retryAttempts: 1,
    retryDelay: 100,
    ...(name ? { name } : {}),
  });
}

/** Compiles and starts an application context from `metadata` (closed after the test). */
async function startModule(metadata: ModuleMetadata): Promise<INestApplicationContext> {
  const app = await (await Test.createTestingModule(metadata).compile()).init();
  opened.push(app);
  return app;
}

/** The error a module graph fails to start with (undefined when it starts). */
async function startupError(metadata: ModuleMetadata): Promise<unknown> {
  return startModule(metadata).then(
    () => undefined,
    (error: unknown) => error,
  );
}

const rowCount = async (where = 'true', params: unknown[] = []) =>
  Number((await bed.db.query<{ n: string }>(`SELECT count(*) AS n FROM module_cache_entries WHERE ${where}`, params))[0].n);

const CONFIG = Symbol('CONFIG');
interface Config {
  realm: string;
  source: FakeSource;
}

describe('forRootAsync and isGlobal', () => {
  it('forRootAsync builds the options with a factory that reads an injected config provider', async () => {
    const source = new FakeSource().define(`${REALM}async.ts`);
    @Module({ providers: [{ provide: CONFIG, useValue: { realm: REALM, source } satisfies Config }], exports: [CONFIG] })
    class ConfigModule {}
    const app = await startModule({
      imports: [
        typeOrm(bed.db.url),
        ModuleCacheModule.forRootAsync({
          imports: [ConfigModule],
          inject: [CONFIG],
          useFactory: (config: Config): ModuleCacheOptions => ({ realms: [config.realm], source: config.source, listener: false }),
        }),
      ],
    });
    const entry = await app.get(CachingDefinitionLookup).lookup(`${REALM}async.ts`);
    expect(entry?.definitions).toEqual({ value: { version: 1, url: `${REALM}async.ts` } });
    expect(source.calls).toEqual([`${REALM}async.ts`]);
    expect(await rowCount('url = $1', [`${REALM}async.ts`])).toBe(1);
  });

  it('isGlobal: true makes CachingDefinitionLookup injectable in a module that does not import ModuleCacheModule', async () => {
    @Injectable()
    class Feature {
      constructor(@Inject(CachingDefinitionLookup) readonly lookup: CachingDefinitionLookup) {}
    }
    @Module({ providers: [Feature], exports: [Feature] })
    class FeatureModule {}
    const source = new FakeSource().define(`${REALM}global.ts`);
    const options: ModuleCacheOptions = { realms: [REALM], source, listener: false };

    // The control: without isGlobal the feature module cannot see the lookup.
    const error = await startupError({ imports: [typeOrm(bed.db.url), ModuleCacheModule.forRoot(options), FeatureModule] });
    expect((error as Error)?.message).toMatch(/can't resolve dependencies of the Feature/i);

    const app = await startModule({
      imports: [typeOrm(bed.db.url), ModuleCacheModule.forRoot({ ...options, isGlobal: true }), FeatureModule],
    });
    const feature = app.get(Feature);
    expect(feature.lookup).toBe(app.get(CachingDefinitionLookup));
    expect((await feature.lookup.lookup(`${REALM}global.ts`))?.url).toBe(`${REALM}global.ts`);
  });

  it('forRootAsync({ isGlobal: true }) is global too', async () => {
    @Injectable()
    class Feature {
      constructor(@Inject(CachingDefinitionLookup) readonly lookup: CachingDefinitionLookup) {}
    }
    @Module({ providers: [Feature] })
    class FeatureModule {}
    const source = new FakeSource().define(`${REALM}global-async.ts`);
    const app = await startModule({
      imports: [
        typeOrm(bed.db.url),
        ModuleCacheModule.forRootAsync({ isGlobal: true, useFactory: () => ({ realms: [REALM], source, listener: false as const }) }),
        FeatureModule,
      ],
    });
    expect((await app.get(Feature).lookup.lookup(`${REALM}global-async.ts`))?.url).toBe(`${REALM}global-async.ts`);
  });
});

describe('the DEFINITION_SOURCE token', () => {
  it('a source provided under DEFINITION_SOURCE (no options.source) computes the lookups', async () => {
    const source = new FakeSource().define(`${REALM}token.ts`);
    @Module({ providers: [{ provide: DEFINITION_SOURCE, useValue: source }], exports: [DEFINITION_SOURCE] })
    class SourceModule {}
    const app = await startModule({
      imports: [typeOrm(bed.db.url), SourceModule, ModuleCacheModule.forRoot({ realms: [REALM], listener: false })],
    });
    expect((await app.get(CachingDefinitionLookup).lookup(`${REALM}token.ts`))?.definitions).toEqual({
      value: { version: 1, url: `${REALM}token.ts` },
    });
    expect(source.calls).toEqual([`${REALM}token.ts`]);
  });

  it('a class provider under DEFINITION_SOURCE gets its own dependencies injected', async () => {
    @Injectable()
    class Greeting {
      readonly word = 'hello';
    }
    @Injectable()
    class GreetingSource {
      constructor(@Inject(Greeting) private readonly greeting: Greeting) {}
      async load(url: string) {
        return { definitions: { said: `${this.greeting.word} ${url}` }, deps: [] };
      }
    }
    @Module({ providers: [Greeting, { provide: DEFINITION_SOURCE, useClass: GreetingSource }], exports: [DEFINITION_SOURCE] })
    class SourceModule {}
    const app = await startModule({
      imports: [typeOrm(bed.db.url), ModuleCacheModule.forRoot({ realms: [REALM], listener: false }), SourceModule],
    });
    expect((await app.get(CachingDefinitionLookup).lookup(`${REALM}class.ts`))?.definitions).toEqual({ said: `hello ${REALM}class.ts` });
  });

  it('a source from an async factory in a module ModuleCacheModule cannot see is found once it exists', async () => {
    @Injectable()
    class Dep {
      readonly version = 7;
    }
    @Module({
      providers: [
        Dep,
        {
          provide: DEFINITION_SOURCE,
          inject: [Dep],
          // Still resolving while ModuleCacheModule's providers are built.
          useFactory: async (dep: Dep) => {
            await new Promise((resolve) => setTimeout(resolve, 50));
            return { load: async () => ({ definitions: { version: dep.version }, deps: [] }) };
          },
        },
      ],
      exports: [DEFINITION_SOURCE],
    })
    class SourceModule {}
    for (const imports of [
      [SourceModule, ModuleCacheModule.forRoot({ realms: [REALM], listener: false })],
      [ModuleCacheModule.forRoot({ realms: [REALM], listener: false }), SourceModule],
    ]) {
      const app = await startModule({ imports: [typeOrm(bed.db.url), ...imports] });
      expect((await app.get(CachingDefinitionLookup).lookup(`${REALM}async-${imports.length}-${Math.random()}.ts`))?.definitions).toEqual({
        version: 7,
      });
    }
  });

  it('prewarm() lists a realm through a DEFINITION_SOURCE found elsewhere in the application, or says it has no listModules', async () => {
    const listing = {
      load: async (url: string) => ({ definitions: { url }, deps: [] }),
      listModules: async (realm: string) => [`${realm}listed.ts`],
    };
    const withoutListing = { load: listing.load };
    for (const [source, expected] of [
      [listing, { warmed: 1 }],
      [withoutListing, { code: 'E_NO_MODULE_LISTING' }],
    ] as const) {
      @Module({ providers: [{ provide: DEFINITION_SOURCE, useValue: source }], exports: [DEFINITION_SOURCE] })
      class SourceModule {}
      const app = await startModule({
        imports: [typeOrm(bed.db.url), ModuleCacheModule.forRoot({ realms: [REALM], listener: false }), SourceModule],
      });
      const outcome = await app
        .get(CachingDefinitionLookup)
        .prewarm(REALM)
        .catch((e: unknown) => e);
      expect(outcome).toMatchObject(expected);
    }
  });

  it('with neither options.source nor DEFINITION_SOURCE, startup fails with a message naming `source`', async () => {
    const error = await startupError({ imports: [typeOrm(bed.db.url), ModuleCacheModule.forRoot({ realms: [REALM], listener: false })] });
    expect(error).toBeInstanceOf(ModuleCacheOptionsError);
    expect((error as ModuleCacheOptionsError).code).toBe('E_INVALID_OPTIONS');
    expect((error as Error).message).toMatch(/^invalid module-cache options: source: .*DEFINITION_SOURCE/);
  });
});

describe('dataSourceName', () => {
  let other: TestDatabase;

  beforeAll(async () => {
    other = await createTestDatabase();
    await migrate(other.url);
  });
  afterAll(async () => {
    await other?.drop();
  });

  /** Where the rows of `url` went: the default DataSource's database, the named one's, or both. */
  async function whereStored(url: string): Promise<{ default: number; other: number }> {
    const count = async (db: TestDatabase) =>
      Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM module_cache_entries WHERE url = $1', [url]))[0].n);
    return { default: await count(bed.db), other: await count(other) };
  }

  /** The database the dedicated connection `applicationName` is connected to. */
  async function listenerDatabase(applicationName: string): Promise<string[]> {
    const rows = await bed.db.query<{ datname: string }>('SELECT datname FROM pg_stat_activity WHERE application_name = $1', [
      applicationName,
    ]);
    return rows.map((r) => r.datname);
  }

  it('forRoot({ dataSourceName }) writes to the named DataSource, and its listener connects there too', async () => {
    const source = new FakeSource().define(`${REALM}named.ts`);
    const listener = listening('named');
    const app = await startModule({
      imports: [
        typeOrm(bed.db.url),
        typeOrm(other.url, 'other'),
        ModuleCacheModule.forRoot({ realms: [REALM], source, listener, dataSourceName: 'other' }),
      ],
    });
    const lookup = app.get(CachingDefinitionLookup);
    await lookup.lookup(`${REALM}named.ts`);
    expect(await whereStored(`${REALM}named.ts`)).toEqual({ default: 0, other: 1 });
    // Derived from the named DataSource: the listener hears NOTIFYs sent through that DataSource's pool.
    expect(await listenerDatabase(listener.applicationName)).toEqual([other.name]);
    expect(app.get(ModuleCacheInvalidationListener).probe.ok).toBe(true);
    // A fresh app on the same named DataSource finds the row in the table.
    const second = await startModule({
      imports: [
        typeOrm(bed.db.url),
        typeOrm(other.url, 'other'),
        ModuleCacheModule.forRoot({ realms: [REALM], source: new FakeSource(), listener: false, dataSourceName: 'other' }),
      ],
    });
    expect((await second.get(CachingDefinitionLookup).lookup(`${REALM}named.ts`))?.url).toBe(`${REALM}named.ts`);
    expect(second.get(CachingDefinitionLookup).stats().hits.table).toBe(1);
    await other.query('DELETE FROM module_cache_entries');
  });

  it('forRootAsync({ dataSourceName, useFactory }) writes to the named DataSource', async () => {
    const source = new FakeSource().define(`${REALM}named-async.ts`);
    const app = await startModule({
      imports: [
        typeOrm(bed.db.url),
        typeOrm(other.url, 'other'),
        ModuleCacheModule.forRootAsync({
          dataSourceName: 'other',
          useFactory: () => ({ realms: [REALM], source, listener: false as const }),
        }),
      ],
    });
    await app.get(CachingDefinitionLookup).lookup(`${REALM}named-async.ts`);
    expect(await whereStored(`${REALM}named-async.ts`)).toEqual({ default: 0, other: 1 });
    await other.query('DELETE FROM module_cache_entries');
  });

  it('a useFactory that returns dataSourceName fails startup, pointing at forRootAsync', async () => {
    const error = await startupError({
      imports: [
        typeOrm(bed.db.url),
        typeOrm(other.url, 'other'),
        ModuleCacheModule.forRootAsync({
          useFactory: () => ({ realms: [REALM], source: new FakeSource(), listener: false, dataSourceName: 'other' }) as ModuleCacheOptions,
        }),
      ],
    });
    expect(error).toBeInstanceOf(ModuleCacheOptionsError);
    expect((error as Error).message).toMatch(/dataSourceName: pass it to forRootAsync\(\{ dataSourceName, useFactory \}\) itself/);
  });
});

describe('a DataSource that is not PostgreSQL', () => {
  it('is refused at startup with a message naming its type', async () => {
    // A real TypeORM DataSource of another type, never initialised: constructing it needs no server.
    // (Its driver object is a stub: TypeORM takes Expo's SQLite client from the options.)
    const sqlite = new DataSource({ type: 'expo', database: 'unused', driver: { openDatabaseAsync: async () => ({}) } });
    @Global()
    @Module({ providers: [{ provide: getDataSourceToken(), useValue: sqlite }], exports: [getDataSourceToken()] })
    class SqliteModule {}
    for (const listener of [{ applicationName: uniqueName('expo') }, false as const]) {
      const error = await startupError({
        imports: [SqliteModule, ModuleCacheModule.forRoot({ realms: [REALM], source: new FakeSource(), listener })],
      });
      expect(error).toBeInstanceOf(ModuleCacheOptionsError);
      expect((error as Error).message).toMatch(/must be a PostgreSQL one \(type: 'postgres'\), got type: 'expo'/);
    }
  });
});
