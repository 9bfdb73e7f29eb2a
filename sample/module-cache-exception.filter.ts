import { Catch, HttpStatus, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import {
  CoalesceTimeoutError,
  ComputationDiscardedError,
  DefinitionNotFoundError,
  DefinitionSourceError,
  DefinitionSourceTimeoutError,
  InvalidationBroadcastError,
  InvalidModuleURLError,
  ModuleCacheError,
  ModuleCacheOptionsError,
  ModuleCacheSchemaError,
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
  // Both are transient: the module kept changing, or the database could not broadcast.
  [ComputationDiscardedError, HttpStatus.SERVICE_UNAVAILABLE],
  [InvalidationBroadcastError, HttpStatus.SERVICE_UNAVAILABLE],
  [ModuleCacheOptionsError, HttpStatus.INTERNAL_SERVER_ERROR],
  [ModuleCacheSchemaError, HttpStatus.INTERNAL_SERVER_ERROR],
];

/** The slice of Express's response this filter uses (no @types/express needed). */
interface JsonResponse {
  status(code: number): { json(body: unknown): void };
}

/**
 * The library's errors as HTTP answers, in one place. The base class itself is what the lookup
 * throws for bad arguments (e.g. an over-long scope), hence 400; a subclass not listed here is
 * one this filter does not know yet, hence 500 (and logged).
 */
@Catch(ModuleCacheError)
export class ModuleCacheExceptionFilter implements ExceptionFilter<ModuleCacheError> {
  private readonly logger = new Logger('ModuleCacheExceptionFilter');

  catch(error: ModuleCacheError, host: ArgumentsHost): void {
    const status =
      STATUS.find(([type]) => error instanceof type)?.[1] ??
      (error.constructor === ModuleCacheError ? HttpStatus.BAD_REQUEST : HttpStatus.INTERNAL_SERVER_ERROR);
    if (status >= 500) this.logger.error(`${error.name}: ${error.message}`);
    host.switchToHttp().getResponse<JsonResponse>().status(status).json({ statusCode: status, error: error.name, message: error.message });
  }
}
