import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * One fence lock for the whole cluster becomes a global lock every fenced statement takes shared,
 * 64 partition locks and a short sequence lock (see docs/how-it-works.md, "The fence"):
 *
 *  - (28003, 0) global: taken shared by module invalidations and persists, exclusively by
 *    clearRealm/clearAll (which touch every partition at once).
 *  - (28004, p) for p in 0..63, the partition of an alias hash (its first byte & 63): a module
 *    invalidation holds its whole fan-out's partitions exclusively; a persist holds the partitions
 *    of its module, its direct dependencies and the entries it incorporated, shared. Every fan-out
 *    that reaches a module passes through one of its direct dependencies, so an in-flight
 *    invalidation that touches what a persist was built from always holds one of its partitions.
 *  - (28003, 1) sequence: held from the invalidation's nextval to its commit, so sequences commit
 *    in order and `committed_seq` stays a watermark below which nothing is still in flight.
 *
 * Waits for the global and partition locks are bounded (`p_wait_ms`, lock_timeout; 0 waits
 * forever): a persist that cannot enter is served unpersisted, an invalidation fails with
 * E_FENCE_BUSY. Persists replace their module's edges with its current imports (the union over
 * its rows' scopes); clears remove the edges of modules gone with nothing depending on them.
 * Module payloads name each URL once. The sync marker of a strong invalidation is sent inside
 * its transaction. The old persist is kept as a wrapper (processes of the previous version
 * stay fenced against this version's invalidations during a rolling upgrade).
 */
export class PartitionedFence1764700000000 implements MigrationInterface {
  name = 'PartitionedFence1764700000000';

  async up(q: QueryRunner): Promise<void> {
    for (const statement of UP) await q.query(statement);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(PREVIOUS_PERSIST);
    for (const signature of NEW_FUNCTIONS.slice().reverse()) await q.query(`DROP FUNCTION ${signature}`);
  }
}

const NEW_FUNCTIONS = [
  'module_cache_partition(uuid)',
  'module_cache_enter_fence(boolean, int[], boolean, bigint)',
  'module_cache_consumers(uuid[])',
  'module_cache_enter_invalidation(uuid[], bigint)',
  'module_cache_sync_marker(bigint, text)',
  'module_cache_invalidate_many(text[], int[], text[], text[], text, int, bigint, text, bigint, text, text)',
  'module_cache_invalidate_fenced(text[], int[], bigint, bigint)',
  'module_cache_clear_realm_fenced(text, bigint, text, text[], bigint, text, text)',
  'module_cache_clear_all_fenced(bigint, text, text[], bigint, text, text)',
  'module_cache_persist_fenced(text, text, text, text, json, text[], json, json, bigint, text[], text[], bigint[], bigint)',
];

const UP = [
  `
      CREATE FUNCTION module_cache_partition(p_hash uuid) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT get_byte(uuid_send(p_hash), 0) & 63
      $$`,
  `
      CREATE FUNCTION module_cache_enter_fence(
        p_global_exclusive boolean, p_partitions int[], p_partitions_exclusive boolean, p_wait_ms bigint
      ) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_saved text := current_setting('lock_timeout');
        v_p int;
      BEGIN
        -- Bounded: lock_timeout for these waits only (SQLSTATE 55P03 when it runs out).
        IF p_wait_ms > 0 THEN
          PERFORM set_config('lock_timeout', p_wait_ms || 'ms', true);
        END IF;
        IF p_global_exclusive THEN
          PERFORM pg_advisory_xact_lock(28003, 0);
        ELSIF NOT p_global_exclusive THEN
          PERFORM pg_advisory_xact_lock_shared(28003, 0);
        END IF;
        -- In ascending order, as every fenced transaction takes them.
        FOR v_p IN SELECT DISTINCT p FROM unnest(p_partitions) AS p ORDER BY p LOOP
          IF p_partitions_exclusive THEN
            PERFORM pg_advisory_xact_lock(28004, v_p);
          ELSE
            PERFORM pg_advisory_xact_lock_shared(28004, v_p);
          END IF;
        END LOOP;
        IF p_wait_ms > 0 THEN
          PERFORM set_config('lock_timeout', v_saved, true);
        END IF;
      END
      $$`,
  `
      CREATE FUNCTION module_cache_consumers(p_hashes uuid[]) RETURNS TABLE (alias_hash uuid) LANGUAGE sql STABLE AS $$
        WITH RECURSIVE affected(h) AS (
          SELECT DISTINCT h FROM unnest(p_hashes) AS h
          UNION
          SELECT e.consumer_alias_hash FROM module_cache_edges e JOIN affected x ON e.dep_alias_hash = x.h
        )
        SELECT h FROM affected
      $$`,
  `
      CREATE FUNCTION module_cache_enter_invalidation(p_seeds uuid[], p_wait_ms bigint) RETURNS uuid[] LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        -- Walked first, so that every partition is taken in one ascending round (as persists take
        -- theirs): no lock-order cycle between fenced transactions.
        v_affected uuid[] := ARRAY(SELECT c.alias_hash FROM module_cache_consumers(p_seeds) c);
        v_held int[] := ARRAY(SELECT DISTINCT module_cache_partition(h) FROM unnest(v_affected) AS h);
        v_more uuid[];
        v_p int;
      BEGIN
        PERFORM module_cache_enter_fence(false, v_held, true, p_wait_ms);
        LOOP
          -- Consumers persisted between the walk and the locks (none can be added now under held partitions).
          v_more := ARRAY(
            SELECT e.consumer_alias_hash FROM module_cache_edges e JOIN unnest(v_affected) AS a(h) ON e.dep_alias_hash = a.h
            EXCEPT SELECT unnest(v_affected));
          EXIT WHEN cardinality(v_more) = 0;
          v_affected := ARRAY(SELECT unnest(v_affected) UNION SELECT c.alias_hash FROM module_cache_consumers(v_more) c);
          -- Out of order now: only if free at once, else the caller starts over (with the larger walk).
          FOR v_p IN SELECT module_cache_partition(h) FROM unnest(v_affected) AS h EXCEPT SELECT unnest(v_held) LOOP
            IF NOT pg_try_advisory_xact_lock(28004, v_p) THEN
              RAISE EXCEPTION 'module-cache: the fan-out grew into a busy partition; retry the invalidation'
                USING ERRCODE = 'MCRT0';
            END IF;
            v_held := v_held || v_p;
          END LOOP;
        END LOOP;
        RETURN v_affected;
      END
      $$`,
  `
      CREATE FUNCTION module_cache_sync_marker(p_seq bigint, p_origin text) RETURNS text LANGUAGE sql STABLE AS $$
        SELECT '{"k":"sync","q":' || to_json(p_seq::text)::text || ',"o":' || to_json(p_origin)::text
            || ',"t":"' || l.token::text || '"}'
          FROM module_cache_fence_log l WHERE l.seq = p_seq
      $$`,
  `
      CREATE FUNCTION module_cache_invalidate_many(
        p_aliases text[], p_groups int[], p_urls text[], p_realms text[], p_origin text, p_budget int, p_retention_ms bigint,
        p_channel text, p_wait_ms bigint, p_sync_channel text, p_sync_origin text
      ) RETURNS TABLE (grp int, urls text, seq bigint, payloads int) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_affected uuid[];
        v_seq bigint;
        v_urls text[];
        v_realms text[];
        v_hashes uuid[];
        v_realm text;
        v_sent int := 0;
      BEGIN
        PERFORM module_cache_require_read_committed();
        v_affected := module_cache_enter_invalidation(ARRAY(SELECT DISTINCT md5(a)::uuid FROM unnest(p_aliases) AS a), p_wait_ms);
        WITH deleted AS (
          DELETE FROM module_cache_entries e USING unnest(v_affected) AS a(h) WHERE e.alias_hash = a.h
          RETURNING e.url, e.realm, e.alias_hash
        ) SELECT coalesce(array_agg(d.url), '{}'), coalesce(array_agg(d.realm), '{}'), coalesce(array_agg(d.alias_hash), '{}')
            INTO v_urls, v_realms, v_hashes FROM deleted d;
        -- From here to COMMIT: sequences commit in the order they are taken.
        PERFORM pg_advisory_xact_lock(28003, 1);
        v_seq := module_cache_log_invalidation('module', NULL, v_affected, p_retention_ms);
        -- A message list per realm (in the order realms first appear), each URL once.
        FOR v_realm IN SELECT x.r FROM unnest(p_realms || v_realms) WITH ORDINALITY AS x(r, i) GROUP BY x.r ORDER BY min(x.i) LOOP
          SELECT v_sent + count(pg_notify(p_channel, p)) INTO v_sent FROM unnest(module_cache_module_payloads(v_realm,
            ARRAY(SELECT x.u FROM unnest(p_urls || v_urls, p_realms || v_realms) WITH ORDINALITY AS x(u, r, i)
                   WHERE x.r = v_realm GROUP BY x.u ORDER BY min(x.i)),
            p_origin, p_budget)) AS p;
        END LOOP;
        IF p_sync_origin IS NOT NULL THEN
          PERFORM pg_notify(p_sync_channel, module_cache_sync_marker(v_seq, p_sync_origin));
        END IF;
        -- Per caller (group) of a group commit: the deleted URLs its own seeds reach. One text, a URL
        -- a line (canonical URLs hold no line breaks): far cheaper to hand over than rows.
        IF (SELECT count(DISTINCT g) FROM unnest(p_groups) AS g) <= 1 THEN
          RETURN QUERY SELECT coalesce(p_groups[1], 0), array_to_string(ARRAY(SELECT DISTINCT unnest(v_urls)), E'\\n'), v_seq, v_sent;
        ELSE
          RETURN QUERY SELECT g.grp, array_to_string(ARRAY(
              SELECT DISTINCT x.u FROM unnest(v_urls, v_hashes) AS x(u, h)
                JOIN module_cache_consumers(ARRAY(SELECT md5(s.a)::uuid FROM unnest(p_aliases, p_groups) AS s(a, sg) WHERE s.sg = g.grp)) c
                  ON c.alias_hash = x.h), E'\\n'), v_seq, v_sent
            FROM (SELECT DISTINCT unnest(p_groups) AS grp) g;
        END IF;
      END
      $$`,
  `
      CREATE FUNCTION module_cache_invalidate_fenced(p_aliases text[], p_groups int[], p_retention_ms bigint, p_wait_ms bigint)
      RETURNS TABLE (grp int, url text, realm text, alias text, seq bigint) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_affected uuid[];
        v_seq bigint;
        v_urls text[];
        v_realms text[];
        v_aliases text[];
        v_hashes uuid[];
      BEGIN
        PERFORM module_cache_require_read_committed();
        v_affected := module_cache_enter_invalidation(ARRAY(SELECT DISTINCT md5(a)::uuid FROM unnest(p_aliases) AS a), p_wait_ms);
        WITH deleted AS (
          DELETE FROM module_cache_entries e USING unnest(v_affected) AS a(h) WHERE e.alias_hash = a.h
          RETURNING e.url, e.realm, e.alias, e.alias_hash
        ) SELECT coalesce(array_agg(d.url), '{}'), coalesce(array_agg(d.realm), '{}'), coalesce(array_agg(d.alias), '{}'),
                 coalesce(array_agg(d.alias_hash), '{}')
            INTO v_urls, v_realms, v_aliases, v_hashes FROM deleted d;
        -- Held until COMMIT, which the caller sends after its NOTIFYs.
        PERFORM pg_advisory_xact_lock(28003, 1);
        v_seq := module_cache_log_invalidation('module', NULL, v_affected, p_retention_ms);
        IF (SELECT count(DISTINCT g) FROM unnest(p_groups) AS g) <= 1 THEN
          RETURN QUERY SELECT coalesce(p_groups[1], 0), x.u, x.r, x.a, NULL::bigint FROM unnest(v_urls, v_realms, v_aliases) AS x(u, r, a);
        ELSE
          RETURN QUERY SELECT g.grp, y.u, y.r, y.a, NULL::bigint
            FROM (SELECT DISTINCT unnest(p_groups) AS grp) g
            CROSS JOIN LATERAL (
              SELECT DISTINCT x.u, x.r, x.a FROM unnest(v_urls, v_realms, v_aliases, v_hashes) AS x(u, r, a, h)
                JOIN module_cache_consumers(ARRAY(SELECT md5(s.a)::uuid FROM unnest(p_aliases, p_groups) AS s(a, sg) WHERE s.sg = g.grp)) c
                  ON c.alias_hash = x.h
            ) y;
        END IF;
        -- The last row: the status row (url NULL) with the sequence.
        RETURN QUERY SELECT NULL::int, NULL::text, NULL::text, NULL::text, v_seq;
      END
      $$`,
  `
      CREATE FUNCTION module_cache_clear_realm_fenced(
        p_realm text, p_retention_ms bigint, p_channel text, p_payloads text[], p_wait_ms bigint, p_sync_channel text, p_sync_origin text
      ) RETURNS TABLE (deleted bigint, seq bigint) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_seq bigint;
        v_count bigint;
        v_gone uuid[];
      BEGIN
        PERFORM module_cache_require_read_committed();
        PERFORM module_cache_enter_fence(true, NULL, false, p_wait_ms);
        PERFORM pg_advisory_xact_lock(28003, 1);
        v_seq := module_cache_log_invalidation('realm', p_realm, NULL, p_retention_ms);
        WITH gone AS (DELETE FROM module_cache_entries e WHERE starts_with(e.realm, p_realm) RETURNING e.alias_hash)
          SELECT count(*), coalesce(array_agg(DISTINCT g.alias_hash), '{}') INTO v_count, v_gone FROM gone g;
        -- The edges of modules gone with nothing left depending on them, a layer at a time.
        LOOP
          DELETE FROM module_cache_edges e USING unnest(v_gone) AS g(h)
           WHERE e.consumer_alias_hash = g.h
             AND NOT EXISTS (SELECT 1 FROM module_cache_entries r WHERE r.alias_hash = g.h)
             AND NOT EXISTS (SELECT 1 FROM module_cache_edges x WHERE x.dep_alias_hash = g.h);
          EXIT WHEN NOT FOUND;
        END LOOP;
        PERFORM pg_notify(p_channel, p) FROM unnest(p_payloads) AS p;
        IF p_sync_origin IS NOT NULL THEN
          PERFORM pg_notify(p_sync_channel, module_cache_sync_marker(v_seq, p_sync_origin));
        END IF;
        RETURN QUERY SELECT v_count, v_seq;
      END
      $$`,
  `
      CREATE FUNCTION module_cache_clear_all_fenced(
        p_retention_ms bigint, p_channel text, p_payloads text[], p_wait_ms bigint, p_sync_channel text, p_sync_origin text
      ) RETURNS TABLE (deleted bigint, seq bigint) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_seq bigint;
        v_count bigint;
      BEGIN
        PERFORM module_cache_require_read_committed();
        PERFORM module_cache_enter_fence(true, NULL, false, p_wait_ms);
        PERFORM pg_advisory_xact_lock(28003, 1);
        v_seq := module_cache_log_invalidation('global', NULL, NULL, p_retention_ms);
        DELETE FROM module_cache_entries;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        DELETE FROM module_cache_edges;
        PERFORM pg_notify(p_channel, p) FROM unnest(p_payloads) AS p;
        IF p_sync_origin IS NOT NULL THEN
          PERFORM pg_notify(p_sync_channel, module_cache_sync_marker(v_seq, p_sync_origin));
        END IF;
        RETURN QUERY SELECT v_count, v_seq;
      END
      $$`,
  `
      CREATE FUNCTION module_cache_persist_fenced(
        p_url text, p_scope text, p_alias text, p_realm text, p_definitions json, p_deps text[],
        p_error json, p_diagnostics json, p_watermark bigint,
        p_part_aliases text[], p_part_realms text[], p_part_watermarks bigint[], p_wait_ms bigint
      ) RETURNS TABLE (status text, created_at timestamptz, watermark bigint, stale text[]) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_fence module_cache_fence;
        v_oldest bigint;
        v_stale text[];
        v_created timestamptz;
        v_alias uuid := md5(p_alias)::uuid;
      BEGIN
        PERFORM module_cache_require_read_committed();
        -- Waits for the invalidations in flight whose fan-out reached the module, a direct dependency
        -- or an incorporated entry (and for clears); held until this one commits.
        PERFORM module_cache_enter_fence(false,
          ARRAY(SELECT module_cache_partition(md5(a)::uuid) FROM unnest(array_append(p_deps || p_part_aliases, p_alias)) AS a),
          false, p_wait_ms);
        -- A new statement snapshot (READ COMMITTED): every invalidation committed before the locks were granted.
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
        -- The module's own inputs: it, its dependencies through the last known graph, its realm and
        -- its direct dependencies' realms (a clear removes the edges of what it cleared), everything.
        IF EXISTS (
          WITH RECURSIVE closure(h) AS (
            SELECT md5(a)::uuid FROM unnest(array_append(p_deps, p_alias)) AS a
            UNION
            SELECT e.dep_alias_hash FROM module_cache_edges e JOIN closure c ON e.consumer_alias_hash = c.h
          )
          SELECT 1 FROM module_cache_fence_log l
           WHERE l.seq > p_watermark
             AND (l.kind = 'global'
               OR (l.kind = 'realm' AND (starts_with(p_realm, l.realm) OR EXISTS (SELECT 1 FROM unnest(p_deps) AS d WHERE starts_with(d, l.realm))))
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
        -- The module's edges are its current imports: the union over its rows (scopes may differ).
        DELETE FROM module_cache_edges e
         WHERE e.consumer_alias_hash = v_alias
           AND e.dep_alias_hash NOT IN (
             SELECT md5(d)::uuid FROM module_cache_entries r, unnest(r.deps) AS d WHERE r.alias_hash = v_alias);
        INSERT INTO module_cache_edges (dep_alias_hash, consumer_alias_hash)
          SELECT DISTINCT md5(d)::uuid, v_alias FROM unnest(p_deps) AS d
          ON CONFLICT DO NOTHING;
        -- Valid as of every invalidation committed so far: none of them touched its inputs.
        RETURN QUERY SELECT 'persisted', v_created, v_fence.committed_seq, NULL::text[];
      END
      $$`,
  `
      CREATE OR REPLACE FUNCTION module_cache_persist(
        p_url text, p_scope text, p_alias text, p_realm text, p_definitions json, p_deps text[],
        p_error json, p_diagnostics json, p_watermark bigint,
        p_part_aliases text[], p_part_realms text[], p_part_watermarks bigint[]
      ) RETURNS TABLE (status text, created_at timestamptz, watermark bigint, stale text[]) LANGUAGE sql VOLATILE AS $$
        SELECT * FROM module_cache_persist_fenced(p_url, p_scope, p_alias, p_realm, p_definitions, p_deps, p_error, p_diagnostics,
          p_watermark, p_part_aliases, p_part_realms, p_part_watermarks, 0)
      $$`,
];

/** module_cache_persist as the json-documents migration left it (before it became a wrapper). Frozen text. */
const PREVIOUS_PERSIST = `
      CREATE OR REPLACE FUNCTION module_cache_persist(
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
