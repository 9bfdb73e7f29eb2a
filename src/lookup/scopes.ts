import { InvalidScopeError } from '../errors';
import { messages } from '../messages';
import type { ScopeFor } from '../config/options';
import { PUBLIC_SCOPE, type LookupOptions } from '../types';
import { textProblem } from '../config/urls';

const MAX_SCOPE_LENGTH = 512;

/**
 * The one rule for the scope of a call, on every path: the caller's explicit `scope`, else what
 * `scopeFor(realm, user)` says (sync or async), else `public`. Synchronous whenever it can be, so
 * a memory hit never awaits. Whatever it returns is stored and served exactly as given.
 */
export function lookupScope(realm: string, options: LookupOptions, scopeFor: ScopeFor | undefined): string | Promise<string> {
  const user = validUser(options.user);
  if (options.scope !== undefined || !scopeFor) return validScope(options.scope ?? PUBLIC_SCOPE, 'scope');
  const derived = scopeFor(realm, user);
  return derived instanceof Promise ? derived.then((s) => validScope(s, 'scopeFor')) : validScope(derived, 'scopeFor');
}

export function validUser(user: unknown): string | undefined {
  if (user === undefined) return undefined;
  if (typeof user !== 'string') throw new InvalidScopeError(messages.badScope('user must be a string'));
  const problem = textProblem(user);
  if (problem) throw new InvalidScopeError(messages.badScope(`user ${problem}`));
  return user;
}

function validScope(scope: unknown, from: 'scope' | 'scopeFor'): string {
  const what = from === 'scopeFor' ? 'returned by scopeFor ' : '';
  if (typeof scope !== 'string' || scope.length === 0 || scope.length > MAX_SCOPE_LENGTH) {
    throw new InvalidScopeError(messages.badScope(`${what}must be a non-empty string of at most ${MAX_SCOPE_LENGTH} characters`));
  }
  const problem = textProblem(scope);
  if (problem) throw new InvalidScopeError(messages.badScope(`${what}${problem}`));
  return scope;
}
