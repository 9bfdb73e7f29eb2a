import { Catch, HttpStatus, Logger, Optional, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ModuleCacheError } from './errors';

/**
 * The HTTP status of every `ModuleCacheError` code: 400 bad input, 404 unknown realm or no
 * module, 502/504 the definition source failed or timed out, 503 the database, the listener or
 * the process is not available (transient: retry), 500 a deployment problem (options, schema).
 */
export const MODULE_CACHE_HTTP_STATUS: Readonly<Record<string, number>> = Object.freeze({
  E_INVALID_MODULE_URL: HttpStatus.BAD_REQUEST,
  E_INVALID_REALM_URL: HttpStatus.BAD_REQUEST,
  E_INVALID_SCOPE: HttpStatus.BAD_REQUEST,
  E_INVALID_LOOKUP_OPTIONS: HttpStatus.BAD_REQUEST,
  E_OUTSIDE_REALM: HttpStatus.BAD_REQUEST,
  E_NO_MODULE_LISTING: HttpStatus.BAD_REQUEST,
  E_UNKNOWN_REALM: HttpStatus.NOT_FOUND,
  E_MODULE_NOT_FOUND: HttpStatus.NOT_FOUND,
  E_DEFINITION_NOT_FOUND: HttpStatus.NOT_FOUND,
  E_SOURCE_FAILED: HttpStatus.BAD_GATEWAY,
  E_SOURCE_TIMEOUT: HttpStatus.GATEWAY_TIMEOUT,
  E_DATABASE_UNAVAILABLE: HttpStatus.SERVICE_UNAVAILABLE,
  E_DEADLINE: HttpStatus.SERVICE_UNAVAILABLE,
  E_LEASE_RENEWAL: HttpStatus.SERVICE_UNAVAILABLE,
  E_INVALIDATION_BROADCAST: HttpStatus.SERVICE_UNAVAILABLE,
  E_INVALIDATION_UNCONFIRMED: HttpStatus.SERVICE_UNAVAILABLE,
  E_COALESCE_TIMEOUT: HttpStatus.SERVICE_UNAVAILABLE,
  E_FENCE_BUSY: HttpStatus.SERVICE_UNAVAILABLE,
  E_SHUTTING_DOWN: HttpStatus.SERVICE_UNAVAILABLE,
  E_INVALID_OPTIONS: HttpStatus.INTERNAL_SERVER_ERROR,
  E_SCHEMA: HttpStatus.INTERNAL_SERVER_ERROR,
});

/** The one body every error answer has. */
export interface ModuleCacheErrorBody {
  statusCode: number;
  code: string;
  message: string;
}

/** The status of a library error: its code's, 500 for a code this table does not know. */
export function moduleCacheHttpStatus(error: ModuleCacheError): number {
  return Object.hasOwn(MODULE_CACHE_HTTP_STATUS, error.code) ? MODULE_CACHE_HTTP_STATUS[error.code] : HttpStatus.INTERNAL_SERVER_ERROR;
}

export function moduleCacheErrorBody(error: ModuleCacheError): ModuleCacheErrorBody {
  return { statusCode: moduleCacheHttpStatus(error), code: error.code, message: error.message };
}

/** Express's and Fastify's responses, without depending on either's types. */
interface ReplyLike {
  status(code: number): { json?(body: unknown): unknown; send?(body: unknown): unknown };
}

/**
 * Turns the library's errors into HTTP answers `{ statusCode, code, message }`. Register it with
 * `{ provide: APP_FILTER, useClass: ModuleCacheExceptionFilter }`, `@UseFilters(...)` or
 * `app.useGlobalFilters(new ModuleCacheExceptionFilter())`. 5xx answers are logged. Outside HTTP
 * (microservices, websockets) the error is rethrown for that transport's own handling.
 */
@Catch(ModuleCacheError)
export class ModuleCacheExceptionFilter implements ExceptionFilter<ModuleCacheError> {
  private readonly logger = new Logger('ModuleCacheExceptionFilter');

  constructor(@Optional() private readonly adapterHost?: HttpAdapterHost) {}

  catch(error: ModuleCacheError, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw error;
    const body = moduleCacheErrorBody(error);
    if (body.statusCode >= 500) this.logger.error(`${error.name} (${error.code}): ${error.message}`);
    const response = host.switchToHttp().getResponse<ReplyLike>();
    const adapter = this.adapterHost?.httpAdapter;
    if (adapter) return void adapter.reply(response, body, body.statusCode);
    const reply = response.status(body.statusCode);
    if (reply.json) reply.json(body);
    else reply.send?.(body);
  }
}
