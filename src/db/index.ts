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

/** Applies pending migrations, then makes sure the default tenant exists. */
export async function migrate(db: Db, options: { defaultTenant?: string } = {}): Promise<void> {
  await db.migrate.latest({ migrationSource });
  const tenant = options.defaultTenant ?? 'default';
  await db('tenants').insert({ identifier: tenant, display_name: tenant }).onConflict('identifier').ignore();
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
