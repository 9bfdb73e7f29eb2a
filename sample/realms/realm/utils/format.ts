// A module in a subfolder importing upward ('../person'), type-only: the dependency is still
// recorded, because a dependency's types can change what a consumer computes to.
import type { PersonData } from '../person';

export const SEPARATOR = ' · ';

// A `let` export: the kind reported is 'let'.
export let locale = 'en';

export function setLocale(next: string): void {
  locale = next;
}

export function formatName(person: PersonData): string {
  return [person.lastName, person.firstName].join(', ');
}
