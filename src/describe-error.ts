/**
 * The text of anything thrown, for a log line or an error message that wraps it (a rejection
 * need not be an Error). Internal: not exported from the package, so it can change freely.
 */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
