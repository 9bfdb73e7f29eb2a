import type { Duplex } from 'node:stream';
import { STATUS_CODES, type Server } from 'node:http';
import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { ModuleCacheError, ModuleCacheExceptionFilter, type ModuleCacheErrorBody } from '../src';
import { ENDPOINTS } from './examples';

/** The slice of Express's response these handlers use (no @types/express needed). */
interface JsonResponse {
  status(code: number): { json(body: unknown): void };
  setHeader(name: string, value: string): void;
}

/** `E_` and the status's name: `E_BAD_REQUEST`, `E_METHOD_NOT_ALLOWED`, … */
export function httpCode(status: number): string {
  const name = STATUS_CODES[status]?.toUpperCase().replace(/[^A-Z]+/g, '_');
  return `E_${name ?? `HTTP_${status}`}`;
}

export function errorBody(status: number, message: string, code = httpCode(status)): ModuleCacheErrorBody {
  return { statusCode: status, code, message };
}

/**
 * Every error of the service in the library filter's body `{ statusCode, code, message }`: the
 * library's errors through ModuleCacheExceptionFilter itself, Nest's HTTP exceptions (400s of
 * bad parameters, the router's 404) with a code named after their status, anything else 500.
 */
@Catch()
export class ServiceExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('ServiceExceptionFilter');
  private readonly library = new ModuleCacheExceptionFilter();

  catch(error: unknown, host: ArgumentsHost): void {
    if (error instanceof ModuleCacheError) return this.library.catch(error, host);
    const response = host.switchToHttp().getResponse<JsonResponse>();
    if (error instanceof HttpException) {
      // An exception built with a whole body (see DefinitionsController) is sent as it is.
      const given = error.getResponse();
      const body = typeof given === 'object' && typeof (given as { code?: unknown }).code === 'string' ? given : undefined;
      response.status(error.getStatus()).json(body ?? errorBody(error.getStatus(), error.message));
      return;
    }
    this.logger.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    response.status(500).json(errorBody(500, 'internal error (logged)'));
  }
}

/** Method and path of each route in ENDPOINTS (and the index), for 405 answers. */
const ALLOWED = new Map<string, string[]>([['/', ['GET']]]);
for (const { route } of ENDPOINTS) {
  const [method, path] = route.split(' ');
  if (path.startsWith('/REALM')) continue; // the realm files: any other path
  const bare = path.split('?')[0];
  ALLOWED.set(bare, [...new Set([...(ALLOWED.get(bare) ?? []), method])]);
}

/** A known route asked with a method it does not take: 405 with `Allow`, instead of the router's 404. */
export function methodNotAllowed() {
  return (req: { method: string; path: string }, res: JsonResponse, next: () => void): void => {
    const allowed = ALLOWED.get(req.path);
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    if (!allowed || allowed.includes(method)) return next();
    res.setHeader('allow', allowed.join(', '));
    res.status(405).json(errorBody(405, `${req.method} ${req.path}: this route takes ${allowed.join(', ')}`));
  };
}

/** Past Node's header limit, a request line longer than this is what made the request too large: 414, not 431. */
const MAX_REQUEST_LINE_BYTES = 8 * 1024;

/**
 * Requests Node's HTTP parser refuses before any route sees them. Node answers those with an empty
 * 431 or 400; here they get a body like every other error, and a URL too long is a 414.
 */
export function answerUnparsableRequests(server: Server): void {
  const answered = new WeakSet<Duplex>();
  server.on('clientError', (error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex) => {
    // One request can raise several (each further chunk); the peer may already be gone.
    if (answered.has(socket) || error.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    answered.add(socket);
    let status = 400;
    let message = 'malformed HTTP request';
    if (error.code === 'HPE_HEADER_OVERFLOW') {
      const lineEnd = error.rawPacket?.indexOf('\r\n') ?? -1;
      [status, message] =
        lineEnd === -1 || lineEnd > MAX_REQUEST_LINE_BYTES
          ? [414, `URL too long: a request line may be at most ${MAX_REQUEST_LINE_BYTES} bytes`]
          : [431, 'request headers too large'];
    }
    const body = JSON.stringify(errorBody(status, message));
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
}
