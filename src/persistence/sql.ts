import { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import type { PostgresDriver } from 'typeorm/driver/postgres/PostgresDriver';
import { asDatabaseError, isConnectionFailure } from './connection-failures';
import type { Statement } from './statements';
import { describeError } from '../describe-error';

/**
 * The fence's global lock, `pg_advisory_xact_lock(28003, 0)`: module invalidations and persists
 * take it shared, clears (and the previous version's invalidations) exclusively; holding it
 * exclusively parks every fenced statement (docs/fence.md). The frozen migrations spell it out as
 * literals; TypeScript code (tests that hold the fence) names it here.
 */
export const FENCE_LOCK = { classId: 28003, objectId: 0 } as const;

/** SQLSTATE that module_cache_require_read_committed() raises outside READ COMMITTED (fence migration). */
export const NEEDS_READ_COMMITTED = 'MCRC0';

/** Runs statements on the transaction a caller holds (see `SqlRunner.readCommittedTransaction`). */
export type TransactionQuery = <T>(statement: Statement, values?: unknown[]) => Promise<T[]>;

export interface SqlRunnerOptions {
  /**
   * `false` for a pool behind a transaction-pooling proxy that does not keep named prepared
   * statements (PgBouncer before 1.21, or without max_prepared_statements).
   */
  preparedStatements?: boolean;
}

/**
 * The one way the stores speak SQL. Every statement is parameterised; channel names travel as
 * `pg_notify` arguments, never spliced into SQL. Statements that wait for the fence lock run
 * under READ COMMITTED whatever the database's default: in one round trip when that is already
 * the default, else (learnt from the first refusal, for the rest of the process's life) inside
 * explicit READ COMMITTED transactions.
 */
export class SqlRunner {
  private readonly logger = new Logger('ModuleCacheSql');
  private readonly preparedStatements: boolean;
  private explicitReadCommitted = false;

  constructor(
    private readonly dataSource: DataSource,
    { preparedStatements = true }: SqlRunnerOptions = {},
  ) {
    this.preparedStatements = preparedStatements;
  }

  /**
   * One statement on a pooled connection (through the driver's public `obtainMasterConnection`,
   * so hot statements can be named and planned once per connection). `readCommitted` statements
   * that the database refuses to run outside READ COMMITTED are run again in such a transaction,
   * and so are all later ones.
   */
  async run<T>(statement: Statement, values: unknown[], { readCommitted = false } = {}): Promise<T[]> {
    if (readCommitted && this.explicitReadCommitted) return this.inReadCommittedTransaction<T>(statement, values);
    try {
      return await this.onPooledConnection<T>(statement, values);
    } catch (error) {
      if (!readCommitted || (error as { code?: string }).code !== NEEDS_READ_COMMITTED) throw error;
      if (!this.explicitReadCommitted) {
        this.explicitReadCommitted = true;
        this.logger.log(`${describeError(error)}: running the cache's fenced statements in READ COMMITTED transactions from now on`);
      }
      return this.inReadCommittedTransaction<T>(statement, values);
    }
  }

  /**
   * `work` inside one explicit READ COMMITTED transaction (TypeORM's, on a pooled connection), for
   * a caller that must act between statements before COMMIT. Errors reach the caller as they are.
   */
  readCommittedTransaction<R>(work: (query: TransactionQuery) => Promise<R>): Promise<R> {
    return this.dataSource.transaction('READ COMMITTED', (manager) =>
      work(<T>(statement: Statement, values?: unknown[]): Promise<T[]> => manager.query(statement.text, values)),
    );
  }

  /** One statement through TypeORM's own query path (no name, no READ COMMITTED retry), errors as they are. */
  query<T>(statement: Statement, values?: unknown[]): Promise<T[]> {
    return this.dataSource.query(statement.text, values);
  }

  private async onPooledConnection<T>(statement: Statement, values: unknown[]): Promise<T[]> {
    const [client, release] = await (this.dataSource.driver as PostgresDriver).obtainMasterConnection().catch((error: unknown) => {
      throw asDatabaseError(error);
    });
    // pg's pool takes its own 'error' listener off a client while it is lent out: without one of
    // ours, a connection lost now (a server restart, a killed backend) is an uncaught 'error' event.
    let lost: unknown;
    const onError = (error: Error) => (lost ??= error);
    const pgClient = client as PgClientLike;
    pgClient.on('error', onError);
    let failure: unknown;
    try {
      const named = this.preparedStatements && statement.prepare;
      const result = await pgClient.query<T>(
        named ? { name: statement.name, text: statement.text, values } : { text: statement.text, values },
      );
      return result.rows;
    } catch (error) {
      failure = error;
      throw asDatabaseError(error);
    } finally {
      const broken = lost ?? (isConnectionFailure(failure) ? failure : undefined);
      if (broken === undefined) pgClient.removeListener('error', onError);
      // A broken connection is never handed out again; it keeps a listener for the rest of its short life.
      release(broken instanceof Error ? broken : broken === undefined ? undefined : new Error(String(broken)));
    }
  }

  private inReadCommittedTransaction<T>(statement: Statement, values: unknown[]): Promise<T[]> {
    return this.readCommittedTransaction((query) => query<T>(statement, values)).catch((error: unknown) => {
      throw asDatabaseError(error);
    });
  }
}

interface PgClientLike {
  query<T>(config: { name?: string; text: string; values: unknown[] }): Promise<{ rows: T[] }>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
}
