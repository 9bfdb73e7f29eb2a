// The realm's entry point, made only of re-exports: named, renamed, type-only, namespace
// (`export * as`) and a star re-export (`export *`, whose names only the source module knows).
export { Person } from './person';
export type { PersonData, PersonId } from './person';
export { Pet as Animal, Species } from './pet';
export * as format from './utils/format';
export * from './pet-owner';
export { default as Catalog } from './catalog.gts';
