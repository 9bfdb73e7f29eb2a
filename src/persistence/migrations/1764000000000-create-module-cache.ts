import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The cache table, its dependency edges, and the fence.
 *
 * Tables are LOGGED on purpose: the fence (invalidation log + sequence) must survive a
 * crash and reach replicas, or a computation in flight across a failover could re-persist
 * a row an acknowledged invalidation deleted. The cost is WAL on every persist, which is
 * small next to the computation a persist follows.
 *
 * Fencing protocol (see README "Guarantees"):
 *  - a lookup reads `module_cache_fence_watermark()` with its table read, before computing;
 *  - every invalidation takes the fence lock exclusively, records the invalidated keys with
 *    a new sequence value, deletes rows and NOTIFYs, all in one transaction (for modules: one
 *    statement, which hands the fan-out back instead when the caller's payloads miss part of it);
 *  - `module_cache_fenced_upsert` takes the fence lock shared (so it waits for any
 *    invalidation transaction in flight) and then, in a fresh statement snapshot, refuses
 *    the write if the module, anything it depends on (transitively, through stored edges),
 *    its realm or everything was invalidated after the watermark.
 */
export class CreateModuleCache1764000000000 implements MigrationInterface {
  name = 'CreateModuleCache1764000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE module_cache_entries (
        url          text        NOT NULL,
        scope        text        NOT NULL,
        url_hash     uuid        GENERATED ALWAYS AS (md5(url)::uuid) STORED,
        alias        text        NOT NULL,
        alias_hash   uuid        GENERATED ALWAYS AS (md5(alias)::uuid) STORED,
        realm        text        NOT NULL,
        realm_hash   uuid        GENERATED ALWAYS AS (md5(realm)::uuid) STORED,
        definitions  jsonb       NOT NULL,
        deps         text[]      NOT NULL DEFAULT '{}',
        error        jsonb,
        diagnostics  jsonb,
        created_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (url_hash, scope)
      )`);
    await q.query(`CREATE INDEX module_cache_entries_alias ON module_cache_entries (alias_hash)`);
    await q.query(`CREATE INDEX module_cache_entries_realm ON module_cache_entries (realm_hash)`);
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
    await q.query(`CREATE SEQUENCE module_cache_fence_seq`);
    await q.query(`
      CREATE TABLE module_cache_invalidations (
        kind           text        NOT NULL CHECK (kind IN ('module', 'realm', 'global')),
        key_hash       uuid        NOT NULL,
        seq            bigint      NOT NULL,
        invalidated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (kind, key_hash)
      )`);
    await q.query(`CREATE INDEX module_cache_invalidations_age ON module_cache_invalidations (invalidated_at) WHERE kind = 'module'`);

    for (const sql of FIRST_VERSION_FUNCTIONS) await q.query(sql);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION IF EXISTS module_cache_clear_all()`);
    await q.query(`DROP FUNCTION IF EXISTS module_cache_clear_realm(text)`);
    await q.query(`DROP FUNCTION IF EXISTS module_cache_invalidate_modules(text[], bigint)`);
    await q.query(`DROP FUNCTION IF EXISTS module_cache_invalidate_and_notify(text[], uuid[], bigint, text, text[])`);
    await q.query(`DROP FUNCTION IF EXISTS module_cache_log_and_delete(uuid[], bigint)`);
    await q.query(`DROP FUNCTION IF EXISTS module_cache_affected_aliases(text[])`);
    await q.query(`DROP FUNCTION IF EXISTS module_cache_fenced_upsert(text, text, text, text, jsonb, text[], jsonb, jsonb, bigint)`);
    await q.query(`DROP FUNCTION IF EXISTS module_cache_fence_watermark()`);
    await q.query(`DROP TABLE IF EXISTS module_cache_invalidations`);
    await q.query(`DROP SEQUENCE IF EXISTS module_cache_fence_seq`);
    await q.query(`DROP TABLE IF EXISTS module_cache_dependencies`);
    await q.query(`DROP TABLE IF EXISTS module_cache_entries`);
  }
}

/**
 * The first version's fence functions, in creation order. Frozen: the fence migration's down()
 * restores them from its own copy of this text.
 */
const FIRST_VERSION_FUNCTIONS = [
  `
    CREATE FUNCTION module_cache_fence_watermark() RETURNS bigint LANGUAGE sql VOLATILE AS $$
      SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM module_cache_fence_seq
    $$`,

  `
    CREATE FUNCTION module_cache_fenced_upsert(
      p_url text, p_scope text, p_alias text, p_realm text, p_definitions jsonb, p_deps text[],
      p_error jsonb, p_diagnostics jsonb, p_watermark bigint
    ) RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      v_created timestamptz;
    BEGIN
      -- Waits for every invalidation transaction in flight; held until this one commits.
      PERFORM pg_advisory_xact_lock_shared(28003, 0);
      -- A new statement snapshot: sees every invalidation committed before the lock was granted.
      IF EXISTS (
        WITH RECURSIVE closure(h) AS (
          SELECT md5(a)::uuid FROM unnest(array_append(p_deps, p_alias)) AS a
          UNION
          SELECT d.dep_alias_hash FROM module_cache_dependencies d JOIN closure c ON d.consumer_alias_hash = c.h
        )
        SELECT 1 FROM module_cache_invalidations i
        WHERE i.seq > p_watermark
          AND ((i.kind = 'module' AND i.key_hash IN (SELECT h FROM closure))
            OR (i.kind = 'realm' AND i.key_hash = md5(p_realm)::uuid)
            OR i.kind = 'global')
      ) THEN
        RETURN NULL;
      END IF;
      INSERT INTO module_cache_entries AS e (url, scope, alias, realm, definitions, deps, error, diagnostics)
      VALUES (p_url, p_scope, p_alias, p_realm, p_definitions, p_deps, p_error, p_diagnostics)
      ON CONFLICT (url_hash, scope) DO UPDATE
        SET alias = EXCLUDED.alias, realm = EXCLUDED.realm, definitions = EXCLUDED.definitions, deps = EXCLUDED.deps,
            error = EXCLUDED.error, diagnostics = EXCLUDED.diagnostics, created_at = now()
      RETURNING e.created_at INTO v_created;
      DELETE FROM module_cache_dependencies WHERE url_hash = md5(p_url)::uuid AND scope = p_scope;
      INSERT INTO module_cache_dependencies (url_hash, scope, consumer_alias_hash, dep_alias_hash)
        SELECT DISTINCT md5(p_url)::uuid, p_scope, md5(p_alias)::uuid, md5(d)::uuid FROM unnest(p_deps) AS d;
      RETURN v_created;
    END
    $$`,

  `
    CREATE FUNCTION module_cache_affected_aliases(p_aliases text[]) RETURNS TABLE (alias_hash uuid)
    LANGUAGE sql STABLE AS $$
      -- The modules and every transitive consumer, by alias; UNION makes cycles terminate.
      WITH RECURSIVE affected(h) AS (
        SELECT md5(a)::uuid FROM unnest(p_aliases) AS a
        UNION
        SELECT d.consumer_alias_hash FROM module_cache_dependencies d JOIN affected x ON d.dep_alias_hash = x.h
      )
      SELECT h FROM affected
    $$`,

  // The part every module invalidation shares, under the fence lock its caller holds.
  `
    CREATE FUNCTION module_cache_log_and_delete(p_affected uuid[], p_retention_ms bigint)
    RETURNS TABLE (url text, realm text, alias text) LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      v_seq bigint := nextval('module_cache_fence_seq');
    BEGIN
      INSERT INTO module_cache_invalidations (kind, key_hash, seq)
        SELECT 'module', h, v_seq FROM unnest(p_affected) AS h
        ON CONFLICT (kind, key_hash) DO UPDATE SET seq = EXCLUDED.seq, invalidated_at = now();
      RETURN QUERY WITH deleted AS (
        DELETE FROM module_cache_entries e USING unnest(p_affected) AS a(h) WHERE e.alias_hash = a.h RETURNING e.url, e.realm, e.alias
      ) SELECT d.url, d.realm, d.alias FROM deleted d;
      -- Only in-flight computations younger than the retention consult the log.
      DELETE FROM module_cache_invalidations
        WHERE kind = 'module' AND invalidated_at < now() - p_retention_ms * interval '1 millisecond';
    END
    $$`,

  // Fence log + delete + NOTIFY in one statement (so one transaction), for a caller that
  // encoded the payloads from the fan-out it knows (`p_known`, alias hashes). If the fan-out
  // now reaches further, nothing happens and the current fan-out comes back instead
  // (done = false) for the caller to encode and try again. Either way the last row is a
  // status row (url NULL) carrying `done`.
  `
    CREATE FUNCTION module_cache_invalidate_and_notify(
      p_aliases text[], p_known uuid[], p_retention_ms bigint, p_channel text, p_payloads text[]
    ) RETURNS TABLE (url text, realm text, alias text, alias_hash uuid, done boolean) LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      v_affected uuid[];
      v_payload text;
    BEGIN
      PERFORM pg_advisory_xact_lock(28003, 0);
      SELECT array_agg(a.alias_hash) INTO v_affected FROM module_cache_affected_aliases(p_aliases) a;
      -- An anti-join, not <@ (which compares every pair: quadratic on a large fan-out).
      IF EXISTS (SELECT 1 FROM unnest(v_affected) AS a(h) WHERE NOT EXISTS (SELECT 1 FROM unnest(p_known) AS k(h) WHERE k.h = a.h)) THEN
        RETURN QUERY SELECT DISTINCT e.url, e.realm, e.alias, e.alias_hash, false
          FROM unnest(v_affected) AS a(h) JOIN module_cache_entries e ON e.alias_hash = a.h;
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::uuid, false;
        RETURN;
      END IF;
      RETURN QUERY SELECT d.url, d.realm, d.alias, md5(d.alias)::uuid, true FROM module_cache_log_and_delete(v_affected, p_retention_ms) d;
      FOREACH v_payload IN ARRAY p_payloads LOOP
        PERFORM pg_notify(p_channel, v_payload);
      END LOOP;
      RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::uuid, true;
    END
    $$`,

  // The same inside a caller's transaction, for when the graph keeps changing under the
  // optimistic path: fan-out, fence log and delete here, NOTIFY by the caller before COMMIT.
  `
    CREATE FUNCTION module_cache_invalidate_modules(p_aliases text[], p_retention_ms bigint)
    RETURNS TABLE (url text, realm text, alias text) LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
      PERFORM pg_advisory_xact_lock(28003, 0);
      RETURN QUERY SELECT * FROM module_cache_log_and_delete(
        ARRAY(SELECT a.alias_hash FROM module_cache_affected_aliases(p_aliases) a), p_retention_ms);
    END
    $$`,

  `
    CREATE FUNCTION module_cache_clear_realm(p_realm text) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      v_count bigint;
    BEGIN
      PERFORM pg_advisory_xact_lock(28003, 0);
      INSERT INTO module_cache_invalidations (kind, key_hash, seq)
        VALUES ('realm', md5(p_realm)::uuid, nextval('module_cache_fence_seq'))
        ON CONFLICT (kind, key_hash) DO UPDATE SET seq = EXCLUDED.seq, invalidated_at = now();
      DELETE FROM module_cache_entries WHERE realm_hash = md5(p_realm)::uuid;
      GET DIAGNOSTICS v_count = ROW_COUNT;
      RETURN v_count;
    END
    $$`,

  `
    CREATE FUNCTION module_cache_clear_all() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      v_count bigint;
    BEGIN
      PERFORM pg_advisory_xact_lock(28003, 0);
      INSERT INTO module_cache_invalidations (kind, key_hash, seq)
        VALUES ('global', md5('')::uuid, nextval('module_cache_fence_seq'))
        ON CONFLICT (kind, key_hash) DO UPDATE SET seq = EXCLUDED.seq, invalidated_at = now();
      DELETE FROM module_cache_dependencies;
      DELETE FROM module_cache_entries;
      GET DIAGNOSTICS v_count = ROW_COUNT;
      RETURN v_count;
    END
    $$`,
];
