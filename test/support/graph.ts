import type { TestDatabase } from './database';

/**
 * Inserts rows and dependency edges directly, as persists would leave them: `edges` maps a module
 * name to the names it imports (all in `realm`); each module gets a row `<realm><name>.gts` (alias
 * `<realm><name>`) in every scope of `scopes`.
 */
export async function seedGraph(
  db: Pick<TestDatabase, 'query'>,
  realm: string,
  edges: Record<string, string[]>,
  scopes = ['public'],
): Promise<void> {
  const names = Object.keys(edges);
  await db.query(
    `INSERT INTO module_cache_entries (url, scope, alias, realm, definitions, deps)
     SELECT $1 || n || '.gts', s, $1 || n, $1, '{}'::json, '{}' FROM unnest($2::text[]) n, unnest($3::text[]) s`,
    [realm, names, scopes],
  );
  await db.query(
    `INSERT INTO module_cache_edges (consumer_alias_hash, dep_alias_hash)
     SELECT md5($1 || c)::uuid, md5($1 || d)::uuid FROM unnest($2::text[], $3::text[]) AS e(c, d) ON CONFLICT DO NOTHING`,
    [realm, names.flatMap((n) => edges[n].map(() => n)), names.flatMap((n) => edges[n])],
  );
}
