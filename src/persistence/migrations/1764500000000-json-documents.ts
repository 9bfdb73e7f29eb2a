import type { MigrationInterface, QueryRunner } from 'typeorm';

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
    await q.query(PERSIST_FUNCTION_JSON);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION module_cache_persist(text, text, text, text, json, text[], json, json, bigint, text[], text[], bigint[])`);
    for (const column of DOCUMENTS)
      await q.query(`ALTER TABLE module_cache_entries ALTER COLUMN ${column} TYPE jsonb USING ${column}::jsonb`);
    await q.query(PERSIST_FUNCTION_JSONB);
  }
}

/** `module_cache_persist` with json documents: the fence migration's rule, unchanged. Frozen text. */
const PERSIST_FUNCTION_JSON = `
      CREATE FUNCTION module_cache_persist(
        p_url text, p_scope text, p_alias text, p_realm text, p_definitions json, p_deps text[],
        p_error json, p_diagnostics json, p_watermark bigint,
        p_part_aliases text[], p_part_realms text[], p_part_watermarks bigint[]
      ) RETURNS TABLE (status text, created_at timestamptz, watermark bigint, stale text[]) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_fence module_cache_fence;
        v_oldest bigint;
        v_stale text[];
        v_created timestamptz;
      BEGIN
        PERFORM module_cache_require_read_committed();
        -- Waits for every invalidation transaction in flight; held until this one commits.
        PERFORM pg_advisory_xact_lock_shared(28003, 0);
        -- A new statement snapshot (READ COMMITTED): every invalidation committed before the lock was granted.
        SELECT * INTO v_fence FROM module_cache_fence;
        -- Log rows up to pruned_seq are gone: a watermark below it could miss one of them.
        SELECT least(p_watermark, min(w)) INTO v_oldest FROM unnest(p_part_watermarks) AS w;
        IF v_oldest < v_fence.pruned_seq THEN
          RETURN QUERY SELECT 'expired', NULL::timestamptz, v_fence.committed_seq,
            ARRAY(SELECT a FROM unnest(p_part_aliases, p_part_watermarks) AS p(a, w) WHERE w < v_fence.pruned_seq);
          RETURN;
        END IF;
        -- Cached entries the computation incorporated, each against its own watermark.
        SELECT array_agg(DISTINCT p.a) INTO v_stale
          FROM unnest(p_part_aliases, p_part_realms, p_part_watermarks) AS p(a, r, w)
         WHERE EXISTS (
           SELECT 1 FROM module_cache_fence_log l
            WHERE l.seq > p.w
              AND (l.kind = 'global'
                OR (l.kind = 'realm' AND starts_with(p.r, l.realm))
                OR (l.kind = 'module' AND md5(p.a)::uuid = ANY (l.aliases))));
        -- The module's own inputs: it, its dependencies through the last known graph, its realm, everything.
        IF EXISTS (
          WITH RECURSIVE closure(h) AS (
            SELECT md5(a)::uuid FROM unnest(array_append(p_deps, p_alias)) AS a
            UNION
            SELECT e.dep_alias_hash FROM module_cache_edges e JOIN closure c ON e.consumer_alias_hash = c.h
          )
          SELECT 1 FROM module_cache_fence_log l
           WHERE l.seq > p_watermark
             AND (l.kind = 'global'
               OR (l.kind = 'realm' AND starts_with(p_realm, l.realm))
               OR (l.kind = 'module' AND EXISTS (SELECT 1 FROM unnest(l.aliases) AS x(h) JOIN closure c ON c.h = x.h)))
        ) THEN
          v_stale := array_append(coalesce(v_stale, '{}'), p_alias);
        END IF;
        IF v_stale IS NOT NULL THEN
          RETURN QUERY SELECT 'fenced', NULL::timestamptz, v_fence.committed_seq, v_stale;
          RETURN;
        END IF;
        INSERT INTO module_cache_entries AS e (url, scope, alias, realm, definitions, deps, error, diagnostics)
        VALUES (p_url, p_scope, p_alias, p_realm, p_definitions, p_deps, p_error, p_diagnostics)
        ON CONFLICT (url_hash, scope) DO UPDATE
          SET alias = EXCLUDED.alias, realm = EXCLUDED.realm, definitions = EXCLUDED.definitions, deps = EXCLUDED.deps,
              error = EXCLUDED.error, diagnostics = EXCLUDED.diagnostics, created_at = now()
        RETURNING e.created_at INTO v_created;
        INSERT INTO module_cache_edges (dep_alias_hash, consumer_alias_hash)
          SELECT DISTINCT md5(d)::uuid, md5(p_alias)::uuid FROM unnest(p_deps) AS d
          ON CONFLICT DO NOTHING;
        -- Valid as of every invalidation committed so far: none of them touched its inputs.
        RETURN QUERY SELECT 'persisted', v_created, v_fence.committed_seq, NULL::text[];
      END
      $$`;

/** The same with jsonb documents, as the fence migration created it: down() restores it. Frozen text. */
const PERSIST_FUNCTION_JSONB = `
      CREATE FUNCTION module_cache_persist(
        p_url text, p_scope text, p_alias text, p_realm text, p_definitions jsonb, p_deps text[],
        p_error jsonb, p_diagnostics jsonb, p_watermark bigint,
        p_part_aliases text[], p_part_realms text[], p_part_watermarks bigint[]
      ) RETURNS TABLE (status text, created_at timestamptz, watermark bigint, stale text[]) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_fence module_cache_fence;
        v_oldest bigint;
        v_stale text[];
        v_created timestamptz;
      BEGIN
        PERFORM module_cache_require_read_committed();
        -- Waits for every invalidation transaction in flight; held until this one commits.
        PERFORM pg_advisory_xact_lock_shared(28003, 0);
        -- A new statement snapshot (READ COMMITTED): every invalidation committed before the lock was granted.
        SELECT * INTO v_fence FROM module_cache_fence;
        -- Log rows up to pruned_seq are gone: a watermark below it could miss one of them.
        SELECT least(p_watermark, min(w)) INTO v_oldest FROM unnest(p_part_watermarks) AS w;
        IF v_oldest < v_fence.pruned_seq THEN
          RETURN QUERY SELECT 'expired', NULL::timestamptz, v_fence.committed_seq,
            ARRAY(SELECT a FROM unnest(p_part_aliases, p_part_watermarks) AS p(a, w) WHERE w < v_fence.pruned_seq);
          RETURN;
        END IF;
        -- Cached entries the computation incorporated, each against its own watermark.
        SELECT array_agg(DISTINCT p.a) INTO v_stale
          FROM unnest(p_part_aliases, p_part_realms, p_part_watermarks) AS p(a, r, w)
         WHERE EXISTS (
           SELECT 1 FROM module_cache_fence_log l
            WHERE l.seq > p.w
              AND (l.kind = 'global'
                OR (l.kind = 'realm' AND starts_with(p.r, l.realm))
                OR (l.kind = 'module' AND md5(p.a)::uuid = ANY (l.aliases))));
        -- The module's own inputs: it, its dependencies through the last known graph, its realm, everything.
        IF EXISTS (
          WITH RECURSIVE closure(h) AS (
            SELECT md5(a)::uuid FROM unnest(array_append(p_deps, p_alias)) AS a
            UNION
            SELECT e.dep_alias_hash FROM module_cache_edges e JOIN closure c ON e.consumer_alias_hash = c.h
          )
          SELECT 1 FROM module_cache_fence_log l
           WHERE l.seq > p_watermark
             AND (l.kind = 'global'
               OR (l.kind = 'realm' AND starts_with(p_realm, l.realm))
               OR (l.kind = 'module' AND EXISTS (SELECT 1 FROM unnest(l.aliases) AS x(h) JOIN closure c ON c.h = x.h)))
        ) THEN
          v_stale := array_append(coalesce(v_stale, '{}'), p_alias);
        END IF;
        IF v_stale IS NOT NULL THEN
          RETURN QUERY SELECT 'fenced', NULL::timestamptz, v_fence.committed_seq, v_stale;
          RETURN;
        END IF;
        INSERT INTO module_cache_entries AS e (url, scope, alias, realm, definitions, deps, error, diagnostics)
        VALUES (p_url, p_scope, p_alias, p_realm, p_definitions, p_deps, p_error, p_diagnostics)
        ON CONFLICT (url_hash, scope) DO UPDATE
          SET alias = EXCLUDED.alias, realm = EXCLUDED.realm, definitions = EXCLUDED.definitions, deps = EXCLUDED.deps,
              error = EXCLUDED.error, diagnostics = EXCLUDED.diagnostics, created_at = now()
        RETURNING e.created_at INTO v_created;
        INSERT INTO module_cache_edges (dep_alias_hash, consumer_alias_hash)
          SELECT DISTINCT md5(d)::uuid, md5(p_alias)::uuid FROM unnest(p_deps) AS d
          ON CONFLICT DO NOTHING;
        -- Valid as of every invalidation committed so far: none of them touched its inputs.
        RETURN QUERY SELECT 'persisted', v_created, v_fence.committed_seq, NULL::text[];
      END
      $$`;
