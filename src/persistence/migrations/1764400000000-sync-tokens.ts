import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Strong consistency's sync markers become unforgeable. Any role that can connect may NOTIFY on
 * the channel, and a marker says "invalidation S has committed": a peer that believed a marker
 * sent before S committed would acknowledge S before applying it. Each fence-log row now carries
 * a random token, readable only once its invalidation has committed; the invalidator sends it in
 * the marker, and an acknowledgement counts only if the token matches the row. (A marker built
 * from a committed row is harmless: it is delivered after that invalidation's own notifications.)
 */
export class SyncTokens1764400000000 implements MigrationInterface {
  name = 'SyncTokens1764400000000';

  async up(q: QueryRunner): Promise<void> {
    // gen_random_uuid(): core since PostgreSQL 13.
    await q.query(`ALTER TABLE module_cache_fence_log ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE module_cache_fence_log DROP COLUMN token`);
  }
}
