import type { MigrationInterface, QueryRunner } from 'typeorm';
import { createV1Functions } from './1764000000000-create-module-cache';
import { persistFunctionSql } from './persist-function';

/**
 * The fence, second version (see README "Guarantees").
 *
 *  - A **committed watermark**: `module_cache_fence.committed_seq` is written by every
 *    invalidation in its own transaction, so a reader sees it move exactly when the invalidation's
 *    deletes become visible. Every table read returns it from the same snapshot as the rows: an
 *    entry is valid as of its watermark (a sequence value taken with `nextval` is not: it is
 *    visible before the transaction that took it commits).
 *  - A **fence log** of one row per invalidation (`module_cache_fence_log`: the alias hashes of a
 *    module invalidation as one array, or a realm prefix, or everything), pruned by age; the
 *    highest pruned sequence is kept, and a persist with a watermark below it is refused.
 *  - **Edges** of the import graph keyed by alias, kept when their consumer's row is deleted: the
 *    fan-out and the fence follow the last known graph, also through modules not cached right
 *    now, and an invalidation does not have to delete them.
 *  - `module_cache_persist` refuses a row when the module's inputs (it, its dependencies through
 *    the edges, its realm, everything) were invalidated after the module's watermark, or when any
 *    cached entry the computation incorporated was invalidated after the watermark under which
 *    *that* entry was read.
 *  - Functions that wait for the fence lock and then read need a fresh snapshot after the wait:
 *    they refuse to run outside READ COMMITTED (SQLSTATE MCRC0), and the repository then wraps them
 *    in READ COMMITTED transactions.
 */
export class FenceWatermarks1764100000000 implements MigrationInterface {
  name = 'FenceWatermarks1764100000000';

  async up(q: QueryRunner): Promise<void> {
    for (const fn of DROPPED_FUNCTIONS) await q.query(`DROP FUNCTION IF EXISTS ${fn}`);

    await q.query(`
      CREATE TABLE module_cache_fence (
        id            boolean PRIMARY KEY DEFAULT true CHECK (id),
        committed_seq bigint  NOT NULL,
        pruned_seq    bigint  NOT NULL
      )`);
    // Watermarks handed out before this migration cannot be checked against the new log: expire them.
    await q.query(`
      INSERT INTO module_cache_fence (committed_seq, pruned_seq)
      SELECT v, v FROM (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS v FROM module_cache_fence_seq) s`);
    await q.query(`DROP TABLE module_cache_invalidations`);
    await q.query(`
      CREATE TABLE module_cache_fence_log (
        seq            bigint      PRIMARY KEY,
        kind           text        NOT NULL CHECK (kind IN ('module', 'realm', 'global')),
        realm          text        CHECK ((kind = 'realm') = (realm IS NOT NULL)),
        aliases        uuid[]      CHECK ((kind = 'module') = (aliases IS NOT NULL)),
        invalidated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX module_cache_fence_log_age ON module_cache_fence_log (invalidated_at)`);

    await q.query(`
      CREATE TABLE module_cache_edges (
        dep_alias_hash      uuid NOT NULL,
        consumer_alias_hash uuid NOT NULL,
        PRIMARY KEY (dep_alias_hash, consumer_alias_hash)
      )`);
    await q.query(`CREATE INDEX module_cache_edges_consumer ON module_cache_edges (consumer_alias_hash, dep_alias_hash)`);
    await q.query(`
      INSERT INTO module_cache_edges (dep_alias_hash, consumer_alias_hash)
      SELECT DISTINCT dep_alias_hash, consumer_alias_hash FROM module_cache_dependencies`);
    await q.query(`DROP TABLE module_cache_dependencies`);

    await q.query(`
      CREATE FUNCTION module_cache_require_read_committed() RETURNS void LANGUAGE plpgsql AS $$
      BEGIN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
          RAISE EXCEPTION 'module-cache needs READ COMMITTED, this transaction is %', current_setting('transaction_isolation')
            USING ERRCODE = 'MCRC0';
        END IF;
      END
      $$`);

    // The import graph from the given aliases towards their consumers; UNION makes cycles terminate.
    await q.query(`
      CREATE FUNCTION module_cache_affected_aliases(p_aliases text[]) RETURNS TABLE (alias_hash uuid)
      LANGUAGE sql STABLE AS $$
        WITH RECURSIVE affected(h) AS (
          SELECT md5(a)::uuid FROM unnest(p_aliases) AS a
          UNION
          SELECT e.consumer_alias_hash FROM module_cache_edges e JOIN affected x ON e.dep_alias_hash = x.h
        )
        SELECT h FROM affected
      $$`);

    // Under the fence lock its caller holds: the log row, the committed watermark, pruning.
    await q.query(`
      CREATE FUNCTION module_cache_log_invalidation(p_kind text, p_realm text, p_aliases uuid[], p_retention_ms bigint)
      RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_seq bigint := nextval('module_cache_fence_seq');
        v_pruned bigint;
      BEGIN
        INSERT INTO module_cache_fence_log (seq, kind, realm, aliases) VALUES (v_seq, p_kind, p_realm, p_aliases);
        WITH pruned AS (
          DELETE FROM module_cache_fence_log WHERE invalidated_at < now() - p_retention_ms * interval '1 millisecond' RETURNING seq
        ) SELECT max(seq) INTO v_pruned FROM pruned;
        UPDATE module_cache_fence SET committed_seq = v_seq, pruned_seq = greatest(pruned_seq, coalesce(v_pruned, pruned_seq));
        RETURN v_seq;
      END
      $$`);

    await q.query(persistFunctionSql('jsonb'));

    // Fan-out, fence log, delete and NOTIFY in one statement (one transaction: peers hear of it
    // exactly when it commits; a failed NOTIFY rolls the delete back), for a caller that encoded
    // the payloads from the fan-out it knows (p_known, alias hashes). If the fan-out now reaches
    // further, nothing happens and the current fan-out comes back instead (done = false) for the
    // caller to encode and try again. Either way the last row is a status row (url NULL).
    await q.query(`
      CREATE FUNCTION module_cache_invalidate_and_notify(
        p_aliases text[], p_known uuid[], p_retention_ms bigint, p_channel text, p_payloads text[]
      ) RETURNS TABLE (url text, realm text, alias text, alias_hash uuid, done boolean, seq bigint) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_affected uuid[];
        v_seq bigint;
        v_payload text;
      BEGIN
        PERFORM module_cache_require_read_committed();
        PERFORM pg_advisory_xact_lock(28003, 0);
        SELECT array_agg(a.alias_hash) INTO v_affected FROM module_cache_affected_aliases(p_aliases) a;
        -- An anti-join, not <@ (which compares every pair: quadratic on a large fan-out).
        IF EXISTS (SELECT 1 FROM unnest(v_affected) AS a(h) WHERE NOT EXISTS (SELECT 1 FROM unnest(p_known) AS k(h) WHERE k.h = a.h)) THEN
          RETURN QUERY SELECT DISTINCT e.url, e.realm, e.alias, e.alias_hash, false, NULL::bigint
            FROM unnest(v_affected) AS a(h) JOIN module_cache_entries e ON e.alias_hash = a.h;
          RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::uuid, false, NULL::bigint;
          RETURN;
        END IF;
        v_seq := module_cache_log_invalidation('module', NULL, v_affected, p_retention_ms);
        RETURN QUERY WITH deleted AS (
          DELETE FROM module_cache_entries e USING unnest(v_affected) AS a(h) WHERE e.alias_hash = a.h RETURNING e.url, e.realm, e.alias, e.alias_hash
        ) SELECT d.url, d.realm, d.alias, d.alias_hash, true, NULL::bigint FROM deleted d;
        FOREACH v_payload IN ARRAY p_payloads LOOP
          PERFORM pg_notify(p_channel, v_payload);
        END LOOP;
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::uuid, true, v_seq;
      END
      $$`);

    // The same inside a caller's transaction, for when the graph keeps changing under the
    // optimistic path: fan-out, fence log and delete here, NOTIFY by the caller before COMMIT.
    await q.query(`
      CREATE FUNCTION module_cache_invalidate_modules(p_aliases text[], p_retention_ms bigint)
      RETURNS TABLE (url text, realm text, alias text, seq bigint) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_affected uuid[];
        v_seq bigint;
      BEGIN
        PERFORM module_cache_require_read_committed();
        PERFORM pg_advisory_xact_lock(28003, 0);
        SELECT array_agg(a.alias_hash) INTO v_affected FROM module_cache_affected_aliases(p_aliases) a;
        v_seq := module_cache_log_invalidation('module', NULL, v_affected, p_retention_ms);
        RETURN QUERY WITH deleted AS (
          DELETE FROM module_cache_entries e USING unnest(v_affected) AS a(h) WHERE e.alias_hash = a.h RETURNING e.url, e.realm, e.alias
        ) SELECT d.url, d.realm, d.alias, v_seq FROM deleted d;
      END
      $$`);

    // A realm prefix: its rows and those of every realm nested under it. NOTIFY in the same statement.
    await q.query(`
      CREATE FUNCTION module_cache_clear_realm(p_realm text, p_retention_ms bigint, p_channel text, p_payloads text[])
      RETURNS TABLE (deleted bigint, seq bigint) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_seq bigint;
        v_count bigint;
      BEGIN
        PERFORM module_cache_require_read_committed();
        PERFORM pg_advisory_xact_lock(28003, 0);
        v_seq := module_cache_log_invalidation('realm', p_realm, NULL, p_retention_ms);
        DELETE FROM module_cache_entries e WHERE starts_with(e.realm, p_realm);
        GET DIAGNOSTICS v_count = ROW_COUNT;
        PERFORM pg_notify(p_channel, p) FROM unnest(p_payloads) AS p;
        RETURN QUERY SELECT v_count, v_seq;
      END
      $$`);

    await q.query(`
      CREATE FUNCTION module_cache_clear_all(p_retention_ms bigint, p_channel text, p_payloads text[])
      RETURNS TABLE (deleted bigint, seq bigint) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_seq bigint;
        v_count bigint;
      BEGIN
        PERFORM module_cache_require_read_committed();
        PERFORM pg_advisory_xact_lock(28003, 0);
        v_seq := module_cache_log_invalidation('global', NULL, NULL, p_retention_ms);
        DELETE FROM module_cache_entries;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        PERFORM pg_notify(p_channel, p) FROM unnest(p_payloads) AS p;
        RETURN QUERY SELECT v_count, v_seq;
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const fn of CREATED_FUNCTIONS) await q.query(`DROP FUNCTION IF EXISTS ${fn}`);
    await q.query(`
      CREATE TABLE module_cache_dependencies (
        url_hash            uuid NOT NULL,
        scope               text NOT NULL,
        consumer_alias_hash uuid NOT NULL,
        dep_alias_hash      uuid NOT NULL,
        PRIMARY KEY (url_hash, scope, dep_alias_hash),
        FOREIGN KEY (url_hash, scope) REFERENCES module_cache_entries (url_hash, scope) ON DELETE CASCADE
      )`);
    await q.query(`CREATE INDEX module_cache_dependencies_dep ON module_cache_dependencies (dep_alias_hash) INCLUDE (consumer_alias_hash)`);
    await q.query(
      `CREATE INDEX module_cache_dependencies_consumer ON module_cache_dependencies (consumer_alias_hash) INCLUDE (dep_alias_hash)`,
    );
    await q.query(`
      INSERT INTO module_cache_dependencies (url_hash, scope, consumer_alias_hash, dep_alias_hash)
      SELECT DISTINCT e.url_hash, e.scope, g.consumer_alias_hash, g.dep_alias_hash
        FROM module_cache_edges g JOIN module_cache_entries e ON e.alias_hash = g.consumer_alias_hash`);
    await q.query(`DROP TABLE module_cache_edges`);
    await q.query(`DROP TABLE module_cache_fence_log`);
    await q.query(`DROP TABLE module_cache_fence`);
    await q.query(`
      CREATE TABLE module_cache_invalidations (
        kind           text        NOT NULL CHECK (kind IN ('module', 'realm', 'global')),
        key_hash       uuid        NOT NULL,
        seq            bigint      NOT NULL,
        invalidated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (kind, key_hash)
      )`);
    await q.query(`CREATE INDEX module_cache_invalidations_age ON module_cache_invalidations (invalidated_at) WHERE kind = 'module'`);
    // Everything before this point counts as invalidated for the first version's fence.
    await q.query(
      `INSERT INTO module_cache_invalidations (kind, key_hash, seq) VALUES ('global', md5('')::uuid, nextval('module_cache_fence_seq'))`,
    );
    await createV1Functions(q);
  }
}

const CREATED_FUNCTIONS = [
  'module_cache_clear_all(bigint, text, text[])',
  'module_cache_clear_realm(text, bigint, text, text[])',
  'module_cache_invalidate_modules(text[], bigint)',
  'module_cache_invalidate_and_notify(text[], uuid[], bigint, text, text[])',
  'module_cache_persist(text, text, text, text, jsonb, text[], jsonb, jsonb, bigint, text[], text[], bigint[])',
  'module_cache_log_invalidation(text, text, uuid[], bigint)',
  'module_cache_affected_aliases(text[])',
  'module_cache_require_read_committed()',
];

const DROPPED_FUNCTIONS = [
  'module_cache_clear_all()',
  'module_cache_clear_realm(text)',
  'module_cache_invalidate_modules(text[], bigint)',
  'module_cache_invalidate_and_notify(text[], uuid[], bigint, text, text[])',
  'module_cache_log_and_delete(uuid[], bigint)',
  'module_cache_affected_aliases(text[])',
  'module_cache_fenced_upsert(text, text, text, text, jsonb, text[], jsonb, jsonb, bigint)',
  'module_cache_fence_watermark()',
];
