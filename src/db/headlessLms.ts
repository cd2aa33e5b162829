/**
 * Queries on a headless-lms database, the source of `npm run import:headless-lms`. Only reads:
 * every session is `default_transaction_read_only` and every query runs in a READ ONLY
 * transaction, so a mistake here cannot write to the system being replaced.
 *
 * The tables and columns it needs (tmc-contract.md, headless-lms's models):
 *   users (id, created_at, updated_at, deleted_at, upstream_id, email_domain)
 *   user_details (user_id, email, first_name, last_name)
 *   user_passwords (user_id, password_hash, created_at, updated_at, deleted_at)
 */
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import knex, { type Knex } from 'knex';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';

export type SourceDb = Knex;

/** What the import reads, table by table. */
export const REQUIRED_COLUMNS: Record<string, string[]> = {
  users: ['id', 'created_at', 'updated_at', 'deleted_at', 'upstream_id', 'email_domain'],
  user_details: ['user_id', 'email', 'first_name', 'last_name'],
  user_passwords: ['user_id', 'password_hash', 'created_at', 'updated_at', 'deleted_at'],
};

/** The source cannot be reached (or refuses the login). The message never contains the password. */
export class SourceUnavailableError extends Error {
  override name = 'SourceUnavailableError';
}

/** The source is reachable but lacks tables or columns the import reads; `missing` names them. */
export class SourceSchemaError extends Error {
  override name = 'SourceSchemaError';
  constructor(readonly missing: string[]) {
    super(`the source database is not a headless-lms database this import can read; missing: ${missing.join(', ')}`);
  }
}

/** `postgres://user@host:port/db`: the URL without its password, for messages. */
export function describeSourceUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/** A small read-only pool on the source database. */
export function openSource(url: string, poolMax = 2): SourceDb {
  return knex({
    client: 'pg',
    connection: { connectionString: url, options: '-c default_transaction_read_only=on', connectionTimeoutMillis: 5_000, statement_timeout: 60_000 },
    pool: { min: 0, max: poolMax },
    acquireConnectionTimeout: 10_000,
  });
}

const readOnly = { readOnly: true } as const;

/**
 * Checks that the source answers and has every REQUIRED_COLUMNS column, and counts its users
 * (deleted ones too: they are counted as skipped). Throws SourceUnavailableError or
 * SourceSchemaError; writes nothing anywhere.
 */
export async function checkSource(source: SourceDb, url: string): Promise<{ users: number }> {
  let present: Array<{ table_name: string; column_name: string }>;
  try {
    present = await source.transaction(
      async (trx) =>
        (
          await trx.raw<{ rows: Array<{ table_name: string; column_name: string }> }>(
            `SELECT table_name, column_name FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ANY(?)`,
            [Object.keys(REQUIRED_COLUMNS)],
          )
        ).rows,
      readOnly,
    );
  } catch (err) {
    throw new SourceUnavailableError(`cannot read the source database ${describeSourceUrl(url)}: ${(err as Error).message}`);
  }
  const have = new Set(present.map((r) => `${r.table_name}.${r.column_name}`));
  const tables = new Set(present.map((r) => r.table_name));
  const missing: string[] = [];
  for (const [table, columns] of Object.entries(REQUIRED_COLUMNS)) {
    if (!tables.has(table)) missing.push(`table ${table}`);
    else for (const column of columns) if (!have.has(`${table}.${column}`)) missing.push(`${table}.${column}`);
  }
  if (missing.length > 0) throw new SourceSchemaError(missing);
  const counted = await source.transaction((trx) => trx.raw<{ rows: Array<{ count: string }> }>('SELECT count(*) AS count FROM users'), readOnly);
  return { users: Number(counted.rows[0]!.count) };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Copies up to `limit` users with ids after `afterId` (keyset pagination by id, so a batch costs
 * the same at any depth), each with its details and password row if any, ordered by id, into
 * `into` in COPY text format: id, created_at, updated_at, deleted_at, upstream_id, email_domain,
 * email, first_name, last_name, password_hash, password_created_at, password_updated_at,
 * password_deleted_at. One READ ONLY transaction; the rows stream from PostgreSQL to PostgreSQL
 * without becoming JS values, and timestamps keep their microseconds.
 */
export async function copySourceBatch(source: SourceDb, afterId: string | null, limit: number, into: Writable): Promise<void> {
  // COPY takes no bind parameters: both values are checked before they are written into the SQL.
  if (afterId !== null && !UUID.test(afterId)) throw new Error('afterId must be a UUID');
  if (!Number.isSafeInteger(limit) || limit < 1) throw new Error('limit must be a positive integer');
  // The bound is repeated on every table: without it, PostgreSQL's merge joins read the details
  // and passwords from the first id on, so batch k would cost k times the first.
  const after = (column: string) => (afterId === null ? '' : `AND ${column} > '${afterId}'::uuid`);
  const sql = `COPY (
    SELECT u.id, u.created_at, u.updated_at, u.deleted_at, u.upstream_id, u.email_domain,
           d.email, d.first_name, d.last_name,
           p.password_hash, p.created_at, p.updated_at, p.deleted_at
    FROM users u
    LEFT JOIN user_details d ON d.user_id = u.id ${after('d.user_id')}
    LEFT JOIN user_passwords p ON p.user_id = u.id ${after('p.user_id')}
    WHERE true ${after('u.id')}
    ORDER BY u.id
    LIMIT ${limit}
  ) TO STDOUT`;
  const conn = (await source.client.acquireConnection()) as pg.PoolClient;
  let broken = false;
  try {
    await conn.query('BEGIN TRANSACTION READ ONLY');
    try {
      await conn.query("SET LOCAL datestyle = 'ISO, YMD'");
      await pipeline(conn.query(copyTo(sql)), into);
      await conn.query('COMMIT');
    } catch (err) {
      await conn.query('ROLLBACK').catch(() => (broken = true));
      throw err;
    }
  } finally {
    if (broken) await conn.end().catch(() => undefined);
    await source.client.releaseConnection(conn);
  }
}
