/**
 * The one timeout helper: every bounded wait in the library (source calls, health queries,
 * self-probes, claims, closing connections) races its work against a `deadline`.
 */
export interface Deadline {
  /** Rejects with `makeError()` when the time is up; never resolves. */
  readonly expired: Promise<never>;
  /** Stops the timer (call it in a `finally`). */
  cancel(): void;
}

export function deadline(ms: number, makeError: () => Error): Deadline {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(makeError()), ms);
  });
  // Nobody may be listening once the work has won the race.
  expired.catch(() => undefined);
  return { expired, cancel: () => clearTimeout(timer) };
}

/** `promise`, or a rejection saying `what` gave no answer within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timeout = deadline(ms, () => new Error(`${what}: no answer within ${ms} ms`));
  try {
    return await Promise.race([promise, timeout.expired]);
  } finally {
    timeout.cancel();
  }
}
