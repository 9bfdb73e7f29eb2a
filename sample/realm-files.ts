import path from 'node:path';
import { isRealmName, type RealmsLayout } from './realm-layout';

/** The slices of Express's request and response this middleware uses (no @types/express needed). */
interface FileRequest {
  method: string;
  /** Below the mount path, still percent-encoded. */
  path: string;
}
interface FileResponse {
  headersSent: boolean;
  sendFile(file: string, options: object, done: (error?: Error & { status?: number; code?: string }) => void): void;
}

/**
 * Serves each realm's files at its module URLs' path (mount it at REALMS_URL's path), so a module
 * URL also shows the source. One middleware for every realm, because realms come and go while
 * Nest's routes (and its 404 handler, after which nothing added is reached) are fixed at start-up.
 * Only `GET /<realm>/<file…>` is served: the service's own routes are one segment deep, so no
 * realm name can shadow them. Anything else, or no such file, falls through to the routes.
 */
export function realmFiles({ realmsDir }: RealmsLayout) {
  return (req: FileRequest, res: FileResponse, next: (error?: unknown) => void): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    let segments: string[];
    try {
      segments = req.path.split('/').slice(1).map(decodeURIComponent);
    } catch {
      return next(); // a malformed escape names no file
    }
    const [realm, ...file] = segments;
    const fileOK = file.length > 0 && file.every((s) => s !== '' && s !== '.' && s !== '..' && !/[/\\\0]/.test(s));
    if (!isRealmName(realm ?? '') || !fileOK) return next();
    res.sendFile(
      file.join('/'),
      {
        root: path.join(realmsDir, realm),
        dotfiles: 'ignore', // `.private` and dot-folders are not the realm's modules
        // `.ts` would otherwise be served as video/mp2t.
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      },
      (error) => {
        if (!error || res.headersSent) return;
        next(error.status === 404 || error.code === 'EISDIR' ? undefined : error);
      },
    );
  };
}
