import { BadRequestException, Body, Controller, Get, HttpCode, NotFoundException, Post, Query } from '@nestjs/common';
import { CachingDefinitionLookup, type ModuleCacheEntry } from '../src';

type Params = Record<string, unknown> | undefined;

/** The cache over HTTP: reads compute on a miss; writes invalidate here and, over NOTIFY, in every worker. */
@Controller()
export class DefinitionsController {
  constructor(private readonly lookup: CachingDefinitionLookup) {}

  /** The whole entry, or one definition with `name`. */
  @Get('definitions')
  async definitions(@Query() query: Params): Promise<ModuleCacheEntry | { url: string; name: string; definition: unknown }> {
    const url = requiredString(query, 'url');
    const scope = optionalString(query, 'scope');
    const name = optionalString(query, 'name');
    if (name !== undefined) return { url, name, definition: await this.lookup.lookupDefinition(url, name, { scope }) };
    const entry = await this.lookup.lookup(url, { scope });
    if (!entry) throw new NotFoundException(`no module at ${url} (nor at any of its extension candidates)`);
    return entry;
  }

  @Post('invalidate')
  @HttpCode(200)
  async invalidate(@Body() body: Params): Promise<{ invalidated: string[] }> {
    return { invalidated: await this.lookup.invalidate(requiredString(body, 'url')) };
  }

  @Post('realms/clear')
  @HttpCode(200)
  async clearRealm(@Body() body: Params): Promise<{ realm: string; deleted: number }> {
    const realm = requiredString(body, 'realm');
    return { realm, deleted: await this.lookup.clearRealm(realm) };
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
