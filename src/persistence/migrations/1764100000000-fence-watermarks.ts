import type { MigrationInterface, QueryRunner } from 'typeorm';

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
 *    they refuse to run outside READ COMMITTED (SQLSTATE MCRC0), and the statement runner
 *    (persistence/sql.ts) then wraps them in READ COMMITTED transactions.
 *
 * Longer than the other files on purpose: a frozen migration carries the text of every statement
 * it runs, and down() restores the first migration's functions from its own copy.
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

    await q.query(PERSIST_FUNCTION);

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
    for (const sql of FIRST_VERSION_FUNCTIONS) await q.query(sql);
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

/** `module_cache_persist`, the fenced write (its rule: see above), with jsonb documents. Frozen text. */
const PERSIST_FUNCTION = `
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

/**
 * The first migration's fence functions, as it created them: down() restores them. A frozen copy
 * of that migration's text, not an import, so that editing one migration never rewrites another.
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
