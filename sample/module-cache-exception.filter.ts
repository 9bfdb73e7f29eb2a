import { Catch, HttpStatus, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import {
  CoalesceTimeoutError,
  DefinitionNotFoundError,
  DefinitionSourceError,
  DefinitionSourceTimeoutError,
  InvalidationBroadcastError,
  InvalidRealmURLError,
  InvalidLookupOptionsError,
  InvalidScopeError,
  ModuleCacheShutdownError,
  InvalidModuleURLError,
  ModuleCacheError,
  ModuleCacheOptionsError,
  ModuleCacheSchemaError,
  ModuleOutsideRealmError,
  NoModuleListingError,
  UnknownRealmError,
} from '../src';

/** Most specific first: subclasses come before the classes they extend. */
const STATUS: [new (...args: never[]) => ModuleCacheError, HttpStatus][] = [
  [InvalidModuleURLError, HttpStatus.BAD_REQUEST],
  [UnknownRealmError, HttpStatus.NOT_FOUND],
  [DefinitionNotFoundError, HttpStatus.NOT_FOUND],
  [DefinitionSourceTimeoutError, HttpStatus.GATEWAY_TIMEOUT],
  // A peer process computing the module neither finished nor let go in time.
  [CoalesceTimeoutError, HttpStatus.GATEWAY_TIMEOUT],
  [DefinitionSourceError, HttpStatus.BAD_GATEWAY],
  // Transient: the database could not broadcast, or the process is shutting down.
  [InvalidationBroadcastError, HttpStatus.SERVICE_UNAVAILABLE],
  [ModuleCacheShutdownError, HttpStatus.SERVICE_UNAVAILABLE],
  [InvalidScopeError, HttpStatus.BAD_REQUEST],
  [InvalidLookupOptionsError, HttpStatus.BAD_REQUEST],
  [InvalidRealmURLError, HttpStatus.BAD_REQUEST],
  [ModuleOutsideRealmError, HttpStatus.BAD_REQUEST],
  [NoModuleListingError, HttpStatus.BAD_REQUEST],
  [ModuleCacheOptionsError, HttpStatus.INTERNAL_SERVER_ERROR],
  [ModuleCacheSchemaError, HttpStatus.INTERNAL_SERVER_ERROR],
];

/** The slice of Express's response this filter uses (no @types/express needed). */
interface JsonResponse {
  status(code: number): { json(body: unknown): void };
}

/**
 * The library's errors as HTTP answers, in one place; one not listed here is one this filter does
 * not know yet, hence 500 (and logged). The body carries the error's stable `code`.
 */
@Catch(ModuleCacheError)
export class ModuleCacheExceptionFilter implements ExceptionFilter<ModuleCacheError> {
  private readonly logger = new Logger('ModuleCacheExceptionFilter');

  catch(error: ModuleCacheError, host: ArgumentsHost): void {
    const status = STATUS.find(([type]) => error instanceof type)?.[1] ?? HttpStatus.INTERNAL_SERVER_ERROR;
    if (status >= 500) this.logger.error(`${error.name} (${error.code}): ${error.message}`);
    host
      .switchToHttp()
      .getResponse<JsonResponse>()
      .status(status)
      .json({ statusCode: status, error: error.name, code: error.code, message: error.message });
  }
}
