import { startEmbeddedPostgres as start, type EmbeddedPostgres } from '../../sample/embedded-postgres';

export { freePort } from '../../sample/embedded-postgres';
export type EmbeddedDatabase = EmbeddedPostgres;

/** A throwaway PG 18 for tests and benchmarks, with room for many connections and no fsync. */
export function startEmbeddedPostgres(): Promise<EmbeddedDatabase> {
  return start({ postgresFlags: ['-c', 'max_connections=300', '-c', 'fsync=off'] });
}
