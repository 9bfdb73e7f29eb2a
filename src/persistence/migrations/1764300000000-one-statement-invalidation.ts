import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A module invalidation in one statement whatever the size of its fan-out: the database finds
 * the consumers, logs the fence, deletes the rows and encodes the NOTIFY payloads itself (the wire
 * format of `encodeInvalidations`: the same keys in the same order, URL lists packed greedily
 * under the byte budget, a URL too long for any payload degraded to a realm message). Signed
 * payloads cannot be made here (no HMAC in core PostgreSQL): with a signing secret the caller
 * encodes them and uses `module_cache_invalidate_and_notify`.
 */
export class OneStatementInvalidation1764300000000 implements MigrationInterface {
  name = 'OneStatementInvalidation1764300000000';

  async up(q: QueryRunner): Promise<void> {
    // One realm's module messages: `{"k":"module","r":REALM,"m":[URL,...]` then `,"o":ORIGIN}`, or
    // `}` in the seed's format; each at most p_budget bytes, URLs packed greedily in the order given.
    // A URL too long for any payload degrades to a realm message (everything, if even that is too long).
    await q.query(`
      CREATE FUNCTION module_cache_module_payloads(p_realm text, p_urls text[], p_origin text, p_budget int)
      RETURNS text[] LANGUAGE plpgsql IMMUTABLE AS $$
      DECLARE
        v_head text := '{"k":"module","r":' || to_json(p_realm)::text || ',"m":[';
        v_tail text := CASE WHEN p_origin IS NULL THEN ']}' ELSE '],"o":' || to_json(p_origin)::text || '}' END;
        v_room int := p_budget - octet_length(v_head) - octet_length(v_tail);
        v_chunk text[] := '{}';
        v_bytes int := 0;
        v_url text;
        v_piece text;
        v_size int;
        v_degraded boolean := false;
        v_payloads text[] := '{}';
      BEGIN
        FOREACH v_url IN ARRAY p_urls LOOP
          v_piece := to_json(v_url)::text;
          v_size := octet_length(v_piece);
          IF v_size > v_room THEN
            v_degraded := true;
            CONTINUE;
          END IF;
          IF v_bytes > 0 AND v_bytes + 1 + v_size > v_room THEN
            v_payloads := v_payloads || (v_head || array_to_string(v_chunk, ',') || v_tail);
            v_chunk := '{}';
            v_bytes := 0;
          END IF;
          -- Appending to a PL/pgSQL array variable happens in place: no quadratic copying.
          v_chunk := v_chunk || v_piece;
          v_bytes := v_bytes + CASE WHEN v_bytes = 0 THEN 0 ELSE 1 END + v_size;
        END LOOP;
        IF v_bytes > 0 THEN
          v_payloads := v_payloads || (v_head || array_to_string(v_chunk, ',') || v_tail);
        END IF;
        IF v_degraded THEN
          -- Coarser, never dropped: the realm, or everything when even the realm does not fit.
          v_piece := '{"k":"realm","r":' || to_json(p_realm)::text
            || CASE WHEN p_origin IS NULL THEN '}' ELSE ',"o":' || to_json(p_origin)::text || '}' END;
          IF octet_length(v_piece) > p_budget THEN
            v_piece := CASE WHEN p_origin IS NULL THEN '{"k":"global"}' ELSE '{"k":"global","o":' || to_json(p_origin)::text || '}' END;
          END IF;
          v_payloads := v_payloads || v_piece;
        END IF;
        RETURN v_payloads;
      END
      $$`);

    // p_variants: every spelling of the invalidated module (its realm's message names them even
    // when no row had them). Returns one row: the deleted URLs and their (distinct) aliases, the
    // invalidation's sequence and the number of payloads sent.
    await q.query(`
      CREATE FUNCTION module_cache_invalidate_encoded(
        p_alias text, p_realm text, p_variants text[], p_origin text, p_budget int,
        p_retention_ms bigint, p_channel text
      ) RETURNS TABLE (urls text, seq bigint, payloads int) LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        v_affected uuid[];
        v_seq bigint;
        v_urls text[];
        v_realms text[];
        v_realm text;
        v_sent int := 0;
      BEGIN
        PERFORM module_cache_require_read_committed();
        PERFORM pg_advisory_xact_lock(28003, 0);
        SELECT array_agg(a.alias_hash) INTO v_affected FROM module_cache_affected_aliases(ARRAY[p_alias]) a;
        v_seq := module_cache_log_invalidation('module', NULL, v_affected, p_retention_ms);
        WITH deleted AS (
          DELETE FROM module_cache_entries e USING unnest(v_affected) AS a(h) WHERE e.alias_hash = a.h RETURNING e.url, e.realm
        ) SELECT coalesce(array_agg(d.url), '{}'), coalesce(array_agg(d.realm), '{}') INTO v_urls, v_realms FROM deleted d;
        IF EXISTS (SELECT 1 FROM unnest(v_realms) AS r WHERE r <> p_realm) THEN
          -- The fan-out reached other realms: one message list per realm.
          FOR v_realm IN SELECT DISTINCT r FROM unnest(v_realms) AS r WHERE r <> p_realm LOOP
            SELECT v_sent + count(pg_notify(p_channel, p)) INTO v_sent FROM unnest(module_cache_module_payloads(
              v_realm, ARRAY(SELECT x.u FROM unnest(v_urls, v_realms) AS x(u, r) WHERE x.r = v_realm), p_origin, p_budget)) AS p;
          END LOOP;
          SELECT v_sent + count(pg_notify(p_channel, p)) INTO v_sent FROM unnest(module_cache_module_payloads(
            p_realm, p_variants || ARRAY(SELECT x.u FROM unnest(v_urls, v_realms) AS x(u, r) WHERE x.r = p_realm), p_origin, p_budget)) AS p;
        ELSE
          SELECT count(pg_notify(p_channel, p)) INTO v_sent
            FROM unnest(module_cache_module_payloads(p_realm, p_variants || v_urls, p_origin, p_budget)) AS p;
        END IF;
        -- One text, a URL a line (canonical URLs hold no line breaks): far cheaper to hand over than rows.
        RETURN QUERY SELECT array_to_string(v_urls, E'\n'), v_seq, v_sent;
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION IF EXISTS module_cache_invalidate_encoded(text, text, text[], text, int, bigint, text)`);
    await q.query(`DROP FUNCTION IF EXISTS module_cache_module_payloads(text, text[], text, int)`);
  }
}
