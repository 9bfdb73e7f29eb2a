/**
 * Coalescing's wake-up, on the computed channel: `{"h":"KEY","o":ORIGIN}`, where KEY is the
 * claim's advisory-lock key (a signed 64-bit integer in decimal). Whoever releases a claim sends
 * it in the same statement as the unlock (the claimant, or the cluster relay for a worker that
 * left), so the key's waiters read the row at once instead of at their next takeover check.
 * Anything else on the channel is ignored: payloads are untrusted hints, and a forged wake-up only
 * makes a waiter read early.
 */

const WAKE_UP = /^\{"h":"(-?[0-9]{1,20})","o":"[^"]{1,255}"\}$/;

export function encodeWakeUp(key: string, origin: string): string {
  return JSON.stringify({ h: key, o: origin });
}

/** The claim key a wake-up names, or undefined for anything that is not exactly one (never throws). */
export function parseWakeUp(payload: string): string | undefined {
  return WAKE_UP.exec(payload)?.[1];
}
