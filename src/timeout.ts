import { DeadlineError } from './errors';

/**
 * The one timeout helper: every bounded wait in the library (source calls, health queries,
 * self-probes, claims, closing connections) races its work against a `deadline`. It rejects with
 * a DeadlineError naming `what` (callers match it with instanceof), or with `makeError()` for a
 * wait whose expiry is itself a public error (the source's DefinitionSourceTimeoutError).
 */
export interface Deadline {
  /** Rejects when the time is up; never resolves. */
  readonly expired: Promise<never>;
  /** Stops the timer (call it in a `finally`). */
  cancel(): void;
}

export function deadline(ms: number, what: string | (() => Error)): Deadline {
  const makeError = typeof what === 'string' ? () => new DeadlineError(what, ms) : what;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(makeError()), ms);
  });
  // Nobody may be listening once the work has won the race.
  expired.catch(() => undefined);
  return { expired, cancel: () => clearTimeout(timer) };
}

/** `promise`, or a DeadlineError saying `what` gave no answer within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timeout = deadline(ms, what);
  try {
    return await Promise.race([promise, timeout.expired]);
  } finally {
    timeout.cancel();
  }
}
