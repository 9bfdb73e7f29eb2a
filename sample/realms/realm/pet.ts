// An extensionless relative import ('./person'): its dependency URL stays extensionless,
// and the lookup's candidate/alias rules decide which file that is.
// The type-only import of './pet-owner' closes a cycle (pet <-> pet-owner), as real code does.
import { Person } from './person';
import type { PetOwner } from './pet-owner';

export enum Species {
  Cat = 'cat',
  Dog = 'dog',
}

export class Pet {
  owner?: PetOwner;

  constructor(
    readonly name: string,
    readonly species: Species,
    readonly vet?: Person,
  ) {}
}
