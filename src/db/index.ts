/**
 * PostgreSQL access through knex + pg. One pool per process; the schema comes from the
 * migrations in ./migrations, applied by `migrate()` at start-up and in tests.
 */
import knex, { type Knex } from 'knex';
import { migrationSource } from './migrations';

export type Db = Knex;

export interface DbOptions {
  url: string;
  poolMax?: number;
  /** Where knex's own warnings go (pool errors while PostgreSQL is down); pino in the service. */
  log?: { warn(msg: string): void; error(msg: string): void };
}

export function createDb({ url, poolMax = 10, log }: DbOptions): Db {
  const text = (m: unknown) => (m instanceof Error ? m.message : String(m));
  return knex({
    log: {
      warn: (m: unknown) => log?.warn(`knex: ${text(m)}`),
      error: (m: unknown) => log?.error(`knex: ${text(m)}`),
      debug: () => undefined,
      deprecate: () => undefined,
    },
    client: 'pg',
    connection: {
      connectionString: url,
      // Fail fast while PostgreSQL is down, so the API answers 503 well inside TMC's 10 s
      // client timeout instead of hanging.
      connectionTimeoutMillis: 3_000,
      statement_timeout: 10_000,
    },
    pool: { min: 0, max: poolMax },
    acquireConnectionTimeout: 4_000,
  });
}

/** Key of the PostgreSQL advisory lock that serializes migrations across processes (any fixed number). */
const MIGRATION_LOCK_KEY = 0x746d6361; // "tmca"

/**
 * Applies pending migrations, then makes sure the default tenant exists.
 *
 * Replicas starting together on one database take turns: the whole step runs under a PostgreSQL
 * session advisory lock, so the first process migrates and the others wait for it, then find
 * nothing to do. Knex's own lock (`knex_migrations_lock`) does not cover this: on an empty
 * database every process creates knex's bookkeeping tables before taking it, and all but one
 * failed with `relation "knex_migrations_lock" already exists`. The lock lives on a connection of
 * its own (not the pool's, which migrate needs), and a process that dies releases it with its
 * session. Waits at most `lockTimeoutMs` (default 2 min) for another process's migration, then
 * throws.
 */
export async function migrate(db: Db, options: { defaultTenant?: string; lockTimeoutMs?: number } = {}): Promise<void> {
  const lock = await db.client.acquireRawConnection() as import('pg').Client;
  try {
    await lock.query(`SET lock_timeout = ${Math.round(options.lockTimeoutMs ?? 120_000)}`);
    await lock.query('SET statement_timeout = 0');
    try {
      await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    } catch (err) {
      if ((err as { code?: string }).code === '55P03') {
        throw new Error(`another process has been migrating this database for over ${options.lockTimeoutMs ?? 120_000} ms (PostgreSQL advisory lock ${MIGRATION_LOCK_KEY})`);
      }
      throw err;
    }
    await db.migrate.latest({ migrationSource });
    const tenant = options.defaultTenant ?? 'default';
    await db('tenants').insert({ identifier: tenant, display_name: tenant }).onConflict('identifier').ignore();
  } finally {
    // Closing the session releases the lock, also when the unlock itself cannot be sent.
    await db.client.destroyRawConnection(lock).catch(() => undefined);
  }
}

/** The pg error codes that mean "PostgreSQL is unreachable or shutting down". */
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006']);

export function isDbUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
  return (
    err.name === 'KnexTimeoutError' ||
    /Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
      err.message,
    )
  );
}
