import { ackPayloadSql, syncMarkerSql } from '../wire/sync-marker';

/**
 * Every statement the stores run, as a named builder (the logic that decides what to run with
 * which values lives in entries.ts, invalidations.ts and peers.ts).
 *
 * A prepared statement's name must always mean one text: a server connection behind a pooling
 * proxy can hold a statement another version of this library prepared under the same name. So
 * names carry one version, `module_cache_s${SCHEMA_VERSION}_<name>`, instead of hand-bumped
 * suffixes: bump SCHEMA_VERSION in the change that makes a migration alter a signature these
 * statements call, or that edits a statement's text.
 */
export const SCHEMA_VERSION = 7;

export interface Statement {
  /** `module_cache_s${SCHEMA_VERSION}_<name>`; sent to the server only when `prepare` is set. */
  readonly name: string;
  readonly text: string;
  /** Hot statements are named (prepared once per pooled connection); rare ones are not, to keep the server's memory small. */
  readonly prepare: boolean;
}

export function statement(name: string, text: string, { prepare = true } = {}): Statement {
  return { name: `module_cache_s${SCHEMA_VERSION}_${name}`, text, prepare };
}

/**
 * A timestamp as whole milliseconds since the epoch, as text: node-postgres parses timestamps only
 * in the ISO DateStyle (a database set to another gives null), and a float's digits depend on
 * extra_float_digits; an integer reads the same under any setting.
 */
const EPOCH_MS = (column: string) => `floor(extract(epoch FROM ${column}) * 1000)::bigint::text`;

// ---- entries ----------------------------------------------------------------------------------

/**
 * Rows and the committed watermark from one snapshot, by URL (`key = url`) or by alias; error rows
 * count only while younger than `$4` ms. The hash finds the row, the text makes sure it is the one.
 * Values: key hashes, keys, scope, error TTL in ms.
 */
const read = (key: 'url' | 'alias') => `
  SELECT f.committed_seq::text AS watermark,
         e.url, e.realm, e.scope, e.alias, e.definitions, e.deps, e.error, e.diagnostics, ${EPOCH_MS('e.created_at')} AS created_ms
    FROM module_cache_fence f
    LEFT JOIN module_cache_entries e
      ON e.${key}_hash = ANY($1::uuid[]) AND e.${key} = ANY($2::text[]) AND e.scope = $3
     AND (e.error IS NULL OR e.created_at > now() - $4::bigint * interval '1 millisecond')`;
export const READ_BY_URL = statement('read_by_url', read('url'));
export const READ_BY_ALIAS = statement('read_by_alias', read('alias'));

/**
 * module_cache_persist's argument types, in order: the one place its signature is written (the
 * call below and the schema check are built from it; the json documents are migration 6's).
 */
export const PERSIST_ARGUMENT_TYPES = [
  'text',
  'text',
  'text',
  'text',
  'json',
  'text[]',
  'json',
  'json',
  'bigint',
  'text[]',
  'text[]',
  'bigint[]',
  'bigint',
];

/**
 * Values: url, scope, alias, realm, definitions, deps, error, diagnostics, watermark, part aliases,
 * part realms, part watermarks, fence wait ms (0: no bound).
 */
export const PERSIST = statement(
  'persist',
  `SELECT status, ${EPOCH_MS('created_at')} AS created_ms, watermark::text, stale
     FROM module_cache_persist_fenced(${PERSIST_ARGUMENT_TYPES.map((type, i) => `$${i + 1}::${type}`).join(', ')})`,
);

/** True when the migrations ran: the fence table and the persist function this version calls exist. */
export const SCHEMA_CHECK = statement(
  'schema_check',
  `SELECT to_regclass('module_cache_fence') IS NOT NULL
      AND to_regprocedure('module_cache_persist_fenced(${PERSIST_ARGUMENT_TYPES.join(',')})') IS NOT NULL AS ok`,
  { prepare: false },
);

// ---- invalidations ----------------------------------------------------------------------------

/**
 * Module invalidations with the payloads encoded by the database; a row per caller group. Values:
 * seed aliases, their groups, variant URLs, their realms, origin (null: the reference server's
 * format), byte budget, retention ms, channel, fence wait ms, sync channel, sync origin (null: no
 * sync marker).
 */
export const INVALIDATE_MANY = statement(
  'invalidate_many',
  `SELECT grp, urls, seq::text, payloads
     FROM module_cache_invalidate_many($1::text[], $2::int[], $3::text[], $4::text[], $5, $6::int, $7::bigint, $8, $9::bigint, $10, $11)`,
);

/**
 * Inside the caller's transaction: the deleted rows per caller group, then the status row (url
 * NULL) with the sequence. Values: seed aliases, their groups, retention ms, fence wait ms.
 */
export const INVALIDATE_FENCED = statement(
  'invalidate_fenced',
  `SELECT grp, url, realm, alias, seq::text FROM module_cache_invalidate_fenced($1::text[], $2::int[], $3::bigint, $4::bigint)`,
  { prepare: false },
);

/** Values: channel, payloads. */
export const NOTIFY_EACH = statement('notify_each', `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, { prepare: false });

/** Values: realm prefix, retention ms, channel, payloads, fence wait ms, sync channel, sync origin (null: no marker). */
export const CLEAR_REALM = statement(
  'clear_realm',
  `SELECT deleted, seq::text FROM module_cache_clear_realm_fenced($1, $2::bigint, $3, $4::text[], $5::bigint, $6, $7)`,
  { prepare: false },
);

/** Values: retention ms, channel, payloads, fence wait ms, sync channel, sync origin (null: no marker). */
export const CLEAR_ALL = statement(
  'clear_all',
  `SELECT deleted, seq::text FROM module_cache_clear_all_fenced($1::bigint, $2, $3::text[], $4::bigint, $5, $6)`,
  {
    prepare: false,
  },
);

/** The database puts the invalidation's token between the two halves. Values: channel, before, after, sequence. */
export const NOTIFY_SYNC = statement(
  'notify_sync',
  `SELECT pg_notify($1, ${syncMarkerSql('$2', 'l.token', '$3')}) FROM module_cache_fence_log l WHERE l.seq = $4::bigint`,
  { prepare: false },
);

/**
 * A reconnect's replay, inside one READ COMMITTED transaction: the lock first (bounded by
 * lock_timeout), then, in a snapshot taken once it is granted, the fence and the log rows after
 * the process's last applied sequence, and a marker NOTIFY. Holding the fence's sequence lock
 * (every invalidation holds it from nextval to commit; see docs/fence.md) and the global lock
 * shared (the previous version's invalidations hold that one exclusively), no invalidation commits
 * between that snapshot and this COMMIT: the marker arrives after the notification of every
 * invalidation the rows include and before that of any later one.
 * Values: lock timeout in ms (as text).
 */
export const REPLAY_LOCK = statement(
  'replay_lock',
  `SELECT set_config('lock_timeout', $1, true), pg_advisory_xact_lock_shared(28003, 0), pg_advisory_xact_lock(28003, 1)`,
  {
    prepare: false,
  },
);

/** The fence and the log rows in (after, committed], oldest first (one row with null seq when there are none). Values: after (null: none). */
export const FENCE_LOG_SINCE = statement(
  'fence_log_since',
  `SELECT f.committed_seq::text AS committed, f.pruned_seq::text AS pruned,
          l.seq::text AS seq, l.kind, l.realm, l.aliases::text[] AS aliases
     FROM module_cache_fence f
     LEFT JOIN module_cache_fence_log l ON l.seq > $1::bigint AND l.seq <= f.committed_seq
    ORDER BY l.seq`,
  { prepare: false },
);

/**
 * A heartbeat probe, and the committed watermark of the same snapshot: once the probe arrives,
 * every invalidation up to that watermark has been delivered before it. Values: channel, payload.
 */
export const PROBE = statement('probe', `SELECT pg_notify($1, $2), (SELECT committed_seq::text FROM module_cache_fence) AS seq`, {
  prepare: false,
});

/** Values: channel, payload. */
export const NOTIFY = statement('notify', `SELECT pg_notify($1, $2)`, { prepare: false });

export const NOTIFY_QUEUE_USAGE = statement('notify_queue_usage', `SELECT pg_notification_queue_usage() AS usage`, { prepare: false });

// ---- peers (consistency: 'strong') ------------------------------------------------------------

/** Values: id, application name, lease ms, join. */
export const RENEW_LEASE = statement(
  'renew_lease',
  `WITH gone AS (DELETE FROM module_cache_peers WHERE lease_expires_at < now() - interval '1 hour' AND id <> $1)
   INSERT INTO module_cache_peers AS p (id, application_name, acked_seq, lease_expires_at)
   SELECT $1, $2, f.committed_seq, now() + $3::bigint * interval '1 millisecond' FROM module_cache_fence f
   ON CONFLICT (id) DO UPDATE
     SET lease_expires_at = EXCLUDED.lease_expires_at,
         acked_seq = CASE WHEN $4::boolean THEN EXCLUDED.acked_seq ELSE p.acked_seq END`,
);

/** Values: id, marker sequences, marker tokens, acknowledgement channel. */
export const ACKNOWLEDGE = statement(
  'acknowledge',
  `WITH genuine AS (
     SELECT max(l.seq) AS seq FROM unnest($2::bigint[], $3::uuid[]) AS m(seq, token)
       JOIN module_cache_fence_log l ON l.seq = m.seq AND l.token = m.token
   ), acked AS (
     UPDATE module_cache_peers p SET acked_seq = greatest(p.acked_seq, g.seq) FROM genuine g
      WHERE p.id = $1 AND g.seq IS NOT NULL RETURNING g.seq
   )
   SELECT seq::text AS acked, pg_notify($4, ${ackPayloadSql('seq')}), set_config('synchronous_commit', 'off', true) FROM acked`,
);

/** Values: id, sequence. */
export const AWAITED_PEERS = statement(
  'awaited_peers',
  `SELECT count(*)::int AS live,
          array_agg(id) FILTER (WHERE acked_seq < $2::bigint) AS waiting,
          (min(extract(epoch FROM lease_expires_at - now())) FILTER (WHERE acked_seq < $2::bigint) * 1000)::float8 AS expires_in_ms
     FROM module_cache_peers WHERE id <> $1 AND lease_expires_at > now()`,
);

/** Values: ids, sequence. */
export const UNACKNOWLEDGED = statement(
  'unacknowledged',
  `SELECT (cardinality($1::text[]) - count(*))::int AS n FROM module_cache_peers WHERE id = ANY($1::text[]) AND acked_seq >= $2::bigint`,
  { prepare: false },
);

/** Values: id. */
export const PEER_SUMMARY = statement(
  'peer_summary',
  `SELECT count(*)::int AS peers, count(*) FILTER (WHERE p.acked_seq < f.committed_seq)::int AS lagging
     FROM module_cache_peers p, module_cache_fence f WHERE p.id <> $1 AND p.lease_expires_at > now()`,
  { prepare: false },
);

/** Values: id. */
export const LEAVE = statement('leave', `DELETE FROM module_cache_peers WHERE id = $1`, { prepare: false });
