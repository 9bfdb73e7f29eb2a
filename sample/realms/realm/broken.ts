// A deliberate syntax error (the object literal is never closed): the source reports it as a
// module error with status 422, and the lookup attaches it to every consumer (uses-broken).
export const broken = {
  reason: 'unterminated',

export function neverReached(): void {}
