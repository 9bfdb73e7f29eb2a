// A valid module whose dependency (./broken) does not parse: its own definitions are fine,
// and the dependency's error is attached to it by the lookup.
import { broken } from './broken';

export function describeBroken(): string {
  return String(broken);
}
