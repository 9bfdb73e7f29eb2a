import type { LoadedModule, ModuleError } from '../types';

/**
 * Error documents: the module's own as the source returned it, dependencies' errors attached
 * the way each `dependencyErrors` mode wants, and a byte budget with a visible marker.
 */

/** The reference's (Boxel realm server's) identity of an error: the same (id, message, status) is one error. */
function errorKey(e: ModuleError): string {
  return JSON.stringify([e.id ?? null, e.message ?? null, e.status ?? null]);
}

/**
 * `dependencyErrors: 'cached'` (the reference's way): the module's own error document, whole, with the
 * cached errors of its dependencies appended to its `additionalErrors`, de-duplicated by
 * (id, message, status), the module's own error included.
 */
export function withCachedDependencyErrors(own: NonNullable<LoadedModule['error']>, dependencyErrors: ModuleError[]): ModuleError {
  const existing = Array.isArray(own.additionalErrors) ? (own.additionalErrors as ModuleError[]) : [];
  const seen = new Set([errorKey(own as ModuleError), ...existing.map(errorKey)]);
  const added = dependencyErrors.filter((e) => !seen.has(errorKey(e)) && seen.add(errorKey(e)));
  return added.length ? { ...own, additionalErrors: [...existing, ...added] } : (own as ModuleError);
}

/**
 * `dependencyErrors: 'compute'`: the module's own error (whole), or for a module that is fine
 * itself a `fromDependency` error, with the root causes among its dependencies' errors attached
 * (transitively, de-duplicated by module URL).
 */
export function withComputedDependencyErrors(url: string, own: LoadedModule['error'], depErrors: ModuleError[]): ModuleError | undefined {
  const additional = dedupeByURL(
    depErrors.flatMap((e) => [...(e.fromDependency ? [] : [withoutNested(e)]), ...(e.additionalErrors ?? [])]),
  ).filter((e) => e.url !== url);
  if (own) {
    const existing = Array.isArray(own.additionalErrors) ? (own.additionalErrors as ModuleError[]) : [];
    return additional.length || existing.length ? { ...own, additionalErrors: [...existing, ...additional] } : (own as ModuleError);
  }
  if (additional.length === 0) return undefined;
  const first = additional[0];
  return {
    message: `dependency ${first.url ?? '(unknown)'} failed: ${first.message}`,
    status: first.status ?? 500,
    url,
    fromDependency: true,
    additionalErrors: additional,
  };
}

function withoutNested(e: ModuleError): ModuleError {
  const { additionalErrors: _ignored, ...rest } = e;
  return rest;
}

function dedupeByURL(errors: ModuleError[]): ModuleError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const key = e.url ?? e.message;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

const MARKER = ' …[truncated]';
const bytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value), 'utf8');

/**
 * The document as it is when it fits `maxBytes` of JSON; otherwise clamped, shedding in this order
 * until it fits: long strings (stacks first, as they come) cut to an eighth of the budget; the
 * `additionalErrors` beyond those that fit, replaced by one entry saying how many were left out;
 * finally everything but `message` (cut) and `status`. A clamped document has `truncated: true`.
 */
export function clampErrorDocument(error: ModuleError, maxBytes: number): ModuleError {
  if (bytes(error) <= maxBytes) return error;
  const cut = (s: string, max: number) =>
    Buffer.byteLength(s, 'utf8') <= max ? s : truncateUTF8(s, Math.max(0, max - MARKER.length)) + MARKER;
  const shorten = (value: unknown, max: number): unknown => {
    if (typeof value === 'string') return cut(value, max);
    if (Array.isArray(value)) return value.map((v) => shorten(v, max));
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shorten(v, max)]));
    return value;
  };
  let doc = { ...(shorten(error, Math.floor(maxBytes / 8)) as ModuleError), truncated: true };
  if (bytes(doc) <= maxBytes) return doc;
  const additional = doc.additionalErrors ?? [];
  if (additional.length) {
    const kept: ModuleError[] = [];
    const base = { ...doc, additionalErrors: kept };
    for (const e of additional) {
      const omitted = { message: `${additional.length - kept.length - 1} more errors left out${MARKER}` };
      if (bytes({ ...base, additionalErrors: [...kept, e, omitted] }) > maxBytes) break;
      kept.push(e);
    }
    doc = { ...doc, additionalErrors: [...kept, { message: `${additional.length - kept.length} more errors left out${MARKER}` }] };
    if (bytes(doc) <= maxBytes) return doc;
  }
  return {
    message: cut(error.message, Math.floor(maxBytes / 2)),
    ...(typeof error.status === 'number' ? { status: error.status } : {}),
    truncated: true,
  };
}

/** At most `max` bytes of `s`, never splitting a character. */
function truncateUTF8(s: string, max: number): string {
  const buffer = Buffer.from(s, 'utf8');
  if (buffer.length <= max) return s;
  let end = max;
  while (end > 0 && (buffer[end] & 0xc0) === 0x80) end--;
  return buffer.subarray(0, end).toString('utf8');
}
