import type { MigrationInterface, QueryRunner } from 'typeorm';
import { persistFunctionSql } from './persist-function';

const DOCUMENTS = ['definitions', 'error', 'diagnostics'];

/**
 * Definitions, errors and diagnostics are stored as `json`, not `jsonb`: jsonb reorders object
 * keys (shorter first), so an entry read from the table listed a module's exports in another
 * order than the entry its computing process served, and than the source returned. `json` keeps
 * the text as written; nothing queries inside these documents.
 */
export class JsonDocuments1764500000000 implements MigrationInterface {
  name = 'JsonDocuments1764500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `DROP FUNCTION module_cache_persist(text, text, text, text, jsonb, text[], jsonb, jsonb, bigint, text[], text[], bigint[])`,
    );
    for (const column of DOCUMENTS)
      await q.query(`ALTER TABLE module_cache_entries ALTER COLUMN ${column} TYPE json USING ${column}::json`);
    await q.query(persistFunctionSql('json'));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION module_cache_persist(text, text, text, text, json, text[], json, json, bigint, text[], text[], bigint[])`);
    for (const column of DOCUMENTS)
      await q.query(`ALTER TABLE module_cache_entries ALTER COLUMN ${column} TYPE jsonb USING ${column}::jsonb`);
    await q.query(persistFunctionSql('jsonb'));
  }
}
