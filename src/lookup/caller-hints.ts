import { InvalidLookupOptionsError } from '../errors';
import type { CallerHints } from '../local/hints';
import { messages } from '../messages';
import { DEFAULT_PRIORITY, HIGHEST_PRIORITY, LOWEST_PRIORITY, type LookupOptions } from '../types';
import { validUser } from './scopes';

/** What a lookup tells the source (priority, user), validated: a bad priority is refused, never clamped. */
export function callerHints(options: LookupOptions): CallerHints {
  const user = validUser(options.user);
  const priority: unknown = options.priority === undefined ? DEFAULT_PRIORITY : options.priority;
  if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < LOWEST_PRIORITY || priority > HIGHEST_PRIORITY) {
    throw new InvalidLookupOptionsError(messages.badPriority(options.priority, LOWEST_PRIORITY, HIGHEST_PRIORITY));
  }
  return user === undefined ? { priority } : { priority, user };
}
