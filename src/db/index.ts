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
  /**
   * Longest a query may run, in ms (default 5 000, so a TMC call gets its 503 inside TMC's 10 s): PostgreSQL cancels it past this
   * (`statement_timeout`), and if no answer arrives 2 s later the connection is taken for dead
   * (a failover, a dropped NAT entry) and dropped from the pool.
   */
  queryTimeoutMs?: number;
  /** A query waiting this long (ms) makes `stuckQuery` report it; default `queryTimeoutMs` + 7 s. */
  stuckAfterMs?: number;
  /** Where knex's own warnings go (pool errors while PostgreSQL is down); pino in the service. */
  log?: { warn(msg: string): void; error(msg: string): void };
}

// knex's PostgreSQL dialect (a class; knex ships no types for it).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const KnexPg: new (config: Knex.Config) => Knex.Client = require('knex/lib/dialects/postgres');

type PgConnection = import('pg').Client & { __knex__disposed?: unknown; connection?: { stream?: { destroy(): void } } };

/**
 * knex's PostgreSQL client, with one change: a connection whose query got no answer in time
 * (`Query read timeout`) or broke is marked disposed and its socket destroyed at once, so the
 * pool replaces it instead of handing it out again. Without this, a failover that black-holes
 * the pooled connections (no FIN, no RST) leaves every one of them hanging for good.
 */
/**
 * Queries sent and not yet settled, with when they were sent, per pool (for liveness:
 * `stuckQuery`). Keyed by the pool's config object, which knex shares with the clients it derives
 * for transactions (those have none of the instance's own fields).
 */
const tracking = new WeakMap<object, { inFlight: Map<object, number>; stuckAfterMs: number }>();

class PgClient extends KnexPg {
  async _query(connection: PgConnection, obj: unknown): Promise<unknown> {
    const inFlight = tracking.get((this as unknown as { config: object }).config)?.inFlight;
    const token = {};
    inFlight?.set(token, Date.now());
    try {
      return await (KnexPg.prototype as unknown as { _query(c: PgConnection, o: unknown): Promise<unknown> })._query.call(this, connection, obj);
    } catch (err) {
      if ((err as Error)?.message === 'Query read timeout' || isDbUnavailable(err)) dropConnection(connection, err);
      throw err;
    } finally {
      inFlight?.delete(token);
    }
  }

  override async destroyRawConnection(connection: PgConnection): Promise<void> {
    // end() waits for the server's goodbye, which a dead connection never sends.
    if (connection.__knex__disposed) return dropConnection(connection, connection.__knex__disposed);
    await Promise.race([
      (KnexPg.prototype as unknown as { destroyRawConnection(c: PgConnection): Promise<void> }).destroyRawConnection.call(this, connection),
      new Promise<void>((resolve) => setTimeout(() => (dropConnection(connection, 'end timed out'), resolve()), 2_000).unref()),
    ]);
  }
}

function dropConnection(connection: PgConnection, reason: unknown): void {
  connection.__knex__disposed ??= reason;
  connection.connection?.stream?.destroy();
}

export function createDb({ url, poolMax = 10, queryTimeoutMs = 5_000, stuckAfterMs = queryTimeoutMs + 7_000, log }: DbOptions): Db {
  const text = (m: unknown) => (m instanceof Error ? m.message : String(m));
  const db = knex({
    log: {
      warn: (m: unknown) => log?.warn(`knex: ${text(m)}`),
      error: (m: unknown) => log?.error(`knex: ${text(m)}`),
      debug: () => undefined,
      deprecate: () => undefined,
    },
    client: PgClient as unknown as typeof Knex.Client,
    connection: {
      connectionString: url,
      // Fail fast while PostgreSQL is down, so the API answers 503 well inside TMC's 10 s
      // client timeout instead of hanging.
      connectionTimeoutMillis: 3_000,
      // Every query is bounded twice: by PostgreSQL (statement_timeout), and on this side
      // (query_timeout) for when PostgreSQL cannot answer at all.
      statement_timeout: queryTimeoutMs,
      query_timeout: queryTimeoutMs + 2_000,
      // A session left inside a transaction by a vanished client releases its locks.
      idle_in_transaction_session_timeout: Math.max(30_000, queryTimeoutMs * 3),
      // The kernel notices a dead peer of an idle pooled connection (after 10 s idle).
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    },
    pool: { min: 0, max: poolMax },
    acquireConnectionTimeout: 4_000,
  });
  // The client gives up on a query after queryTimeoutMs + 2 s (by default 5 s more and it counts as stuck).
  tracking.set((db.client as unknown as { config: object }).config, { inFlight: new Map(), stuckAfterMs });
  return db;
}

/**
 * A query of this pool that has waited for an answer far past its bound (`createDb`'s timeouts
 * give up on it after `queryTimeoutMs` + 2 s), or undefined. Such a query means the process is
 * wedged, not that PostgreSQL is slow or down (that gives errors): liveness fails on it
 * (`GET /healthz`), so an orchestrator restarts the process.
 */
export function stuckQuery(db: Db): { ageMs: number; boundMs: number } | undefined {
  const tracked = tracking.get((db.client as unknown as { config: object }).config);
  if (!tracked || tracked.inFlight.size === 0) return undefined;
  let oldest = Infinity;
  for (const sentAt of tracked.inFlight.values()) oldest = Math.min(oldest, sentAt);
  const ageMs = Date.now() - oldest;
  return ageMs > tracked.stuckAfterMs ? { ageMs, boundMs: tracked.stuckAfterMs } : undefined;
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
      // Bounded by lock_timeout on the server, not by the pool's client-side query timeout.
      await lock.query({ text: 'SELECT pg_advisory_lock($1)', values: [MIGRATION_LOCK_KEY], query_timeout: (options.lockTimeoutMs ?? 120_000) + 10_000 } as import('pg').QueryConfig);
    } catch (err) {
      if ((err as { code?: string }).code === '55P03') {
        throw new Error(`another process has been migrating this database for over ${options.lockTimeoutMs ?? 120_000} ms (PostgreSQL advisory lock ${MIGRATION_LOCK_KEY})`);
      }
      throw err;
    }
    // Migrations may run longer than an interactive query (an index on a big table): they get a
    // pool of their own without the service's query timeout.
    const url = (db.client as unknown as { config: { connection: { connectionString: string } } }).config.connection.connectionString;
    const migrator = createDb({ url, poolMax: 2, queryTimeoutMs: 60 * 60_000 });
    try {
      await migrator.migrate.latest({ migrationSource });
      const tenant = options.defaultTenant ?? 'default';
      await migrator('tenants').insert({ identifier: tenant, display_name: tenant }).onConflict('identifier').ignore();
    } finally {
      await migrator.destroy();
    }
  } finally {
    // Closing the session releases the lock, also when the unlock itself cannot be sent.
    await db.client.destroyRawConnection(lock).catch(() => undefined);
  }
}

/** The pg error codes that mean "PostgreSQL is unreachable or shutting down". */
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006', '57014']);

export function isDbUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
  return (
    err.name === 'KnexTimeoutError' ||
    /Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout|Connection ended unexpectedly|^timeout expired$/i.test(
      err.message,
    )
  );
}
