/** A lone UTF-16 surrogate (with the `u` flag, a well-formed pair is one code point and does not match). */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Why `text` cannot be stored exactly, or undefined when it can. Postgres text holds no NUL, and
 * the driver encodes a lone surrogate as U+FFFD: two different strings would then share one row
 * (a scope '\uD800' and a scope '\uFFFD'), so both are refused, never substituted.
 */
export function textProblem(text: string): string | undefined {
  if (text.includes('\u0000')) return 'must not contain NUL characters';
  if (LONE_SURROGATE.test(text)) return 'must be well-formed UTF-16 (it holds an unpaired surrogate)';
  return undefined;
}
