import { BadRequestException, Body, Controller, Get, HttpCode, HttpException, Post, Query, Req } from '@nestjs/common';
import { CachingDefinitionLookup, ModuleNotFoundError, type ModuleCacheEntry, type PrewarmSummary } from '../src';
import { errorBody } from './http-errors';

type Params = Record<string, unknown> | undefined;

/** The slice of Node's request this controller reads: each header's values, unjoined. */
interface HeadersRequest {
  headersDistinct: Record<string, string[] | undefined>;
}

/** The cache over HTTP: reads compute on a miss; writes invalidate here and, over NOTIFY, in every worker. */
@Controller()
export class DefinitionsController {
  constructor(private readonly lookup: CachingDefinitionLookup) {}

  /**
   * The whole entry, or one definition with `name`. The `x-user` header says who asks: a private
   * realm's scope is per user (see realm-layout.ts); `scope` names one outright and wins. Neither
   * is authenticated: this service has no authentication at all.
   */
  @Get('definitions')
  async definitions(
    @Query() query: Params,
    @Req() req: HeadersRequest,
  ): Promise<ModuleCacheEntry | { url: string; name: string; definition: unknown }> {
    const url = requiredString(query, 'url');
    const options = { scope: optionalString(query, 'scope'), user: userOf(req) };
    const name = optionalString(query, 'name');
    if (name !== undefined) return { url, name, definition: await this.lookup.lookupDefinition(url, name, options) };
    const entry = await this.lookup.lookup(url, options);
    if (!entry) throw new ModuleNotFoundError(url);
    // A module that failed (a syntax error is 422) answers its error's status, the entry alongside.
    if (entry.error) {
      const status = httpStatusOf(entry.error.status);
      throw new HttpException({ ...errorBody(status, entry.error.message, 'E_MODULE_ERROR'), entry }, status);
    }
    return entry;
  }

  /** `{"url": URL}` or `{"urls": [URL, …]}` (one transaction for the whole list). */
  @Post('invalidate')
  @HttpCode(200)
  async invalidate(@Body() body: Params): Promise<{ invalidated: string[] }> {
    if (body?.urls !== undefined) {
      const urls = body.urls;
      if (!Array.isArray(urls) || urls.length === 0 || !urls.every((u) => typeof u === 'string' && u !== '')) {
        throw new BadRequestException('"urls" must be a non-empty array of URL strings');
      }
      return { invalidated: await this.lookup.invalidateMany(urls as string[]) };
    }
    return { invalidated: await this.lookup.invalidate(requiredString(body, 'url')) };
  }

  @Post('realms/clear')
  @HttpCode(200)
  async clearRealm(@Body() body: Params): Promise<{ realm: string; deleted: number }> {
    const realm = requiredString(body, 'realm');
    return { realm, deleted: await this.lookup.clearRealm(realm) };
  }

  /** Computes and stores a realm's modules ahead of their first lookup (all of them, or `modules`); answers with the summary. */
  @Post('prewarm')
  @HttpCode(200)
  async prewarm(@Body() body: Params): Promise<PrewarmSummary> {
    const realm = requiredString(body, 'realm');
    const modules = body?.modules;
    if (modules !== undefined && (!Array.isArray(modules) || modules.some((m) => typeof m !== 'string' || m === ''))) {
      throw new BadRequestException('"modules" must be an array of non-empty strings');
    }
    return this.lookup.prewarm(realm, modules as string[] | undefined);
  }

  @Post('clear')
  @HttpCode(200)
  async clear(): Promise<{ deleted: number }> {
    return { deleted: await this.lookup.clearAll() };
  }
}

// Query strings repeat keys (`?url=a&url=b` is an array) and bodies are arbitrary JSON:
// anything but one non-empty string is a 400 that says which parameter.
function requiredString(params: Params, key: string): string {
  const value = optionalString(params, key);
  if (value === undefined) throw new BadRequestException(`"${key}" is required`);
  return value;
}

function optionalString(params: Params, key: string): string | undefined {
  const value = params?.[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) throw new BadRequestException(`"${key}" must be one non-empty string`);
  return value;
}

function httpStatusOf(status: unknown): number {
  return typeof status === 'number' && Number.isInteger(status) && status >= 400 && status <= 599 ? status : 500;
}

// Node joins repeated headers with ", " in `headers`; `headersDistinct` keeps them apart, so two
// x-user headers are refused rather than read as one user named "alice, bob".
function userOf(req: HeadersRequest): string | undefined {
  const values = req.headersDistinct['x-user'];
  if (values === undefined) return undefined;
  if (values.length !== 1 || values[0] === '') throw new BadRequestException('"x-user" must be one non-empty header');
  // Node reads header bytes as Latin-1: take them back and read them as the UTF-8 they are.
  const bytes = Buffer.from(values[0], 'latin1');
  const user = bytes.toString('utf8');
  if (!Buffer.from(user, 'utf8').equals(bytes)) throw new BadRequestException('"x-user" must be UTF-8');
  return user;
}
