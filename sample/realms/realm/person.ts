// The leaf most of the realm depends on: change it and invalidation fans out to pet, pet-owner, utils/format,
// utils/dates.js, catalog, index, pet-card.gts, pet-gallery.gts (and back through the pet <-> pet-owner cycle).
export type PersonId = string;

export interface PersonData {
  id: PersonId;
  firstName: string;
  lastName: string;
}

export class Person {
  constructor(readonly data: PersonData) {}

  get fullName(): string {
    return `${this.data.firstName} ${this.data.lastName}`;
  }
}
