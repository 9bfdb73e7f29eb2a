import { InvalidScopeError } from '../errors';
import { messages } from '../messages';
import type { ScopeFor } from '../module-cache.options';
import { PUBLIC_SCOPE, type LookupOptions } from '../types';

const MAX_SCOPE_LENGTH = 512;

/**
 * Who a row is valid for: the caller's explicit `scope`, else what `scopeFor(realm, user)` says
 * (sync or async), else `public`. Synchronous whenever it can be, so a memory hit never awaits.
 */
export function scopeOf(realm: string, options: LookupOptions, scopeFor: ScopeFor | undefined): string | Promise<string> {
  if (options.scope !== undefined || !scopeFor) return validScope(options.scope ?? PUBLIC_SCOPE, 'scope');
  if (options.user !== undefined && typeof options.user !== 'string')
    throw new InvalidScopeError(messages.badScope('user must be a string'));
  const derived = scopeFor(realm, options.user);
  return derived instanceof Promise ? derived.then((s) => validScope(s, 'scopeFor')) : validScope(derived, 'scopeFor');
}

function validScope(scope: unknown, from: 'scope' | 'scopeFor'): string {
  const what = from === 'scopeFor' ? 'returned by scopeFor ' : '';
  if (typeof scope !== 'string' || scope.length === 0 || scope.length > MAX_SCOPE_LENGTH) {
    throw new InvalidScopeError(messages.badScope(`${what}must be a non-empty string of at most ${MAX_SCOPE_LENGTH} characters`));
  }
  // Postgres text cannot hold NUL: reject it here rather than fail in the database.
  if (scope.includes('\u0000')) throw new InvalidScopeError(messages.badScope(`${what}must not contain NUL characters`));
  return scope;
}
