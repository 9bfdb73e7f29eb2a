import { randomBytes } from 'node:crypto';

/**
 * A listener's self-probe: `{"k":"probe","o":ORIGIN,"n":NONCE}` on the invalidation channel (its
 * control channel in `wireFormat: 'boxel'`),
 * sent through the DataSource pool (the path peers' invalidations take) and awaited on the
 * dedicated connection. The nonce makes each probe unique, so the listener matches the payload
 * itself. Not an invalidation (parseInvalidation rejects it), so listeners filter probes out first.
 */
export function encodeProbe(origin: string): string {
  return JSON.stringify({ k: 'probe', o: origin, n: randomBytes(12).toString('hex') });
}

/** Whether `payload` is a probe (anyone's); never throws. */
export function isProbePayload(payload: string): boolean {
  if (!payload.startsWith('{"k":"probe",')) return false;
  try {
    const v = JSON.parse(payload) as Record<string, unknown>;
    return Object.keys(v).length === 3 && typeof v.o === 'string' && typeof v.n === 'string';
  } catch {
    return false;
  }
}
