import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `module_cache_entries.realm_hash` and its index are dead weight: only the first fence's
 * `module_cache_clear_realm(text)` read them, and the fence migration replaced it with a prefix
 * match on `realm` (clearRealm clears nested realms too). Every persist still computed the hash
 * and kept the index up to date. No function, statement or entity uses them now.
 */
export class DropRealmHash1764600000000 implements MigrationInterface {
  name = 'DropRealmHash1764600000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX module_cache_entries_realm`);
    await q.query(`ALTER TABLE module_cache_entries DROP COLUMN realm_hash`);
  }

  // The column comes back last in the table, not after `realm`: nothing reads columns by position.
  // The fence migration's down() needs it (its restored clearRealm deletes by realm_hash).
  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE module_cache_entries ADD COLUMN realm_hash uuid GENERATED ALWAYS AS (md5(realm)::uuid) STORED`);
    await q.query(`CREATE INDEX module_cache_entries_realm ON module_cache_entries (realm_hash)`);
  }
}
