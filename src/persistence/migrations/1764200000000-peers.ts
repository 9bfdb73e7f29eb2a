import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Membership for `consistency: 'strong'`: one row per process, with the lease it renews through
 * its heartbeat (judged by the database clock) and the highest invalidation sequence it has
 * applied and acknowledged. A strong invalidation waits for every live peer's acknowledgement,
 * or for that peer's lease to run out; a process trusts its memory only while its own lease
 * holds (by its own clock, with a margin).
 */
export class Peers1764200000000 implements MigrationInterface {
  name = 'Peers1764200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE module_cache_peers (
        id               text        PRIMARY KEY,
        application_name text        NOT NULL,
        acked_seq        bigint      NOT NULL,
        lease_expires_at timestamptz NOT NULL,
        joined_at        timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX module_cache_peers_lease ON module_cache_peers (lease_expires_at)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS module_cache_peers`);
  }
}
