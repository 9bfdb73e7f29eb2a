import { DatabaseUnavailableError, ModuleCacheError } from '../errors';
import { messages } from '../messages';
import { describeError } from '../describe-error';

/** SQLSTATEs that mean the connection or the server is gone, not that the statement was wrong. */
const CONNECTION_SQLSTATE = /^(08|57P0[1-4]|53300)/;

/**
 * True for failures of the connection rather than of the statement: no SQLSTATE at all (pg's
 * "Connection terminated unexpectedly", a socket error such as ECONNREFUSED or ECONNRESET), or a
 * connection-class SQLSTATE (admin/crash shutdown, cannot connect now, too many connections).
 */
export function isConnectionFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = errorCode(error);
  if (typeof code !== 'string') return true;
  return /^[0-9A-Z]{5}$/.test(code) ? CONNECTION_SQLSTATE.test(code) : code.startsWith('E');
}

/** The driver's error code (a SQLSTATE, or a Node code such as ECONNRESET), also through TypeORM's `driverError`. */
function errorCode(error: Error): unknown {
  const driver = (error as { driverError?: unknown }).driverError;
  return ((driver instanceof Error ? driver : error) as { code?: unknown }).code;
}

/** A connection failure as a coded DatabaseUnavailableError (the driver's error as its cause); anything else as it is. */
export function asDatabaseError(error: unknown): unknown {
  if (error instanceof ModuleCacheError || !isConnectionFailure(error)) return error;
  return new DatabaseUnavailableError(messages.databaseUnavailable(describeError(error)), { cause: error });
}

/** SQLSTATE lock_not_available: a fenced statement's bounded wait for the fence (lock_timeout) ran out. */
export const LOCK_NOT_AVAILABLE = '55P03';

/** True when the statement gave up waiting for the fence (see LOCK_NOT_AVAILABLE). */
export function isFenceTimeout(error: unknown): boolean {
  return error instanceof Error && errorCode(error) === LOCK_NOT_AVAILABLE;
}

/**
 * SQLSTATEs of a lock-order conflict the database broke: deadlock_detected (a persist and an
 * invalidation whose fan-out grew under it), or the fence's own "fan-out grew into a busy
 * partition" (MCRT0). The statement did nothing; running it again is safe.
 */
const LOCK_ORDER_CONFLICT = new Set(['40P01', 'MCRT0']);

export function isLockOrderConflict(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = errorCode(error);
  return typeof code === 'string' && LOCK_ORDER_CONFLICT.has(code);
}
