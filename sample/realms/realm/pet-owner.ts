// Two dependencies (./pet and ./person): a consumer reached from person by two paths.
import { Pet } from './pet';
import { Person, type PersonData } from './person';

export class PetOwner extends Person {
  readonly pets: Pet[] = [];

  constructor(data: PersonData) {
    super(data);
  }
}

export function adopt(owner: PetOwner, pet: Pet): PetOwner {
  owner.pets.push(pet);
  pet.owner = owner;
  return owner;
}

export const MAX_PETS = 5,
  { MIN_AGE, MAX_AGE } = { MIN_AGE: 18, MAX_AGE: 120 };
