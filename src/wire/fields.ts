/**
 * Rules shared by every shape on the wire (invalidations, probes, sync markers, wake-ups): the
 * size Postgres lets through, how bytes are counted, and what an origin id may be.
 */

/** Postgres's hard limit: a NOTIFY payload of 8000 bytes or more is refused, so anything longer never came through NOTIFY. */
export const POSTGRES_PAYLOAD_LIMIT = 7999;
export const MAX_ORIGIN_LENGTH = 255;
// The URL parser silently strips these, so a string containing them is not the URL it names.
export const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** Payload budgets are in UTF-8 bytes (the server encoding), not UTF-16 code units. */
export const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/** An origin id names the sending process, so it can ignore its own echo. */
export const isOrigin = (s: string): boolean => s.length > 0 && s.length <= MAX_ORIGIN_LENGTH && !CONTROL_CHARS.test(s);
