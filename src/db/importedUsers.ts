/**
 * The service's side of `npm run import:headless-lms`: writes a batch of headless-lms users
 * (read by db/headlessLms.ts) into users, user_details and user_passwords, set-based, in one
 * transaction, and records what the batch did so that a retry returns the same counts.
 *
 * Per source row, keyed by id (ids are kept: TMC knows users by them):
 * - deleted in the source: skipped, nothing written;
 * - conflict, reported and not written: its upstream_id belongs to another active user here
 *   (`upstream_id_taken`), or the user was deleted here (`deleted_here`);
 * - missing here: imported (user, details, live password hash with its timestamps);
 * - present here: the user and details are overwritten only if the source's users.updated_at is
 *   newer, the password only if the source's user_passwords.updated_at is newer (a password
 *   changed or re-hashed here after the last import wins): updated, else unchanged.
 * A password deleted in the source is not imported and does not delete one here.
 */
import type { Writable } from 'node:stream';
import type { Knex } from 'knex';
import type { QueryResult, QueryResultRow, Submittable } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { ImportCounts } from '../workflows/shared';

export type ConflictReason = 'upstream_id_taken' | 'deleted_here';

/** A source row that was not imported. Ids only: no email or name enters Temporal or logs. */
export interface ImportConflict {
  id: string;
  upstreamId: number | null;
  /** The user here that holds the upstream_id (or the deleted user with this id). */
  existingId: string;
  reason: ConflictReason;
}

/** One batch's counts: the same shape as the import's running totals. */
export type BatchCounts = ImportCounts;

export interface BatchResult extends BatchCounts {
  conflictList: ImportConflict[];
  /** The batch's largest source id: the next batch starts after it. Null for an empty batch. */
  lastId: string | null;
}

/** The row shape of db/headlessLms.ts copySourceBatch, as a temporary table (same column order). */
const BATCH_TABLE = `CREATE TEMP TABLE import_batch (
  id uuid NOT NULL, created_at timestamptz, updated_at timestamptz, deleted_at timestamptz,
  upstream_id integer, email_domain text, email text, first_name text, last_name text,
  password_hash text, password_created_at timestamptz, password_updated_at timestamptz, password_deleted_at timestamptz,
  existing boolean NOT NULL DEFAULT false
) ON COMMIT DROP`;

/**
 * Fills the batch: writes the source's rows in COPY text format (the column order of
 * BATCH_TABLE) into `into`, and resolves once they are all written.
 */
export type BatchLoader = (into: Writable) => Promise<void>;

/** The few pg client calls a batch needs (a pooled connection of knex's). */
interface PgConnection {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
  query<T extends Submittable>(stream: T): T;
}

/** Steps 1–5 on `conn` inside a transaction; the caller commits (import) or rolls back (dry run). */
async function writeBatch(conn: PgConnection, load: BatchLoader): Promise<BatchResult> {
  // 1. The batch as a table, streamed from the source with COPY, so the rest is set-based.
  await conn.query(BATCH_TABLE);
  const copyIn = conn.query(copyFrom('COPY import_batch (id, created_at, updated_at, deleted_at, upstream_id, email_domain, email, first_name, last_name, password_hash, password_created_at, password_updated_at, password_deleted_at) FROM STDIN'));
  await load(copyIn);
  const rows = copyIn.rowCount;
  const last = await conn.query<{ id: string }>('SELECT id FROM import_batch ORDER BY id DESC LIMIT 1');
  const lastId = last.rows[0]?.id ?? null;

  // 2. Deleted in the source: skipped.
  const skipped = (await conn.query('DELETE FROM import_batch WHERE deleted_at IS NOT NULL')).rowCount ?? 0;

  // 3. Conflicts: reported, then left out of every write below.
  const conflictRows = await conn.query<{ id: string; upstream_id: number | null; existing_id: string; reason: ConflictReason }>(
    `SELECT DISTINCT ON (id) * FROM (
       SELECT s.id, s.upstream_id, o.id AS existing_id, 'upstream_id_taken' AS reason
         FROM import_batch s JOIN users o ON o.upstream_id = s.upstream_id AND o.deleted_at IS NULL AND o.id <> s.id
       UNION ALL
       SELECT s.id, s.upstream_id, t.id, 'deleted_here' FROM import_batch s JOIN users t ON t.id = s.id AND t.deleted_at IS NOT NULL
     ) c ORDER BY id, reason DESC`,
  );
  const conflictList: ImportConflict[] = conflictRows.rows.map((r) => ({ id: r.id, upstreamId: r.upstream_id, existingId: r.existing_id, reason: r.reason }));
  if (conflictList.length > 0) await conn.query('DELETE FROM import_batch WHERE id = ANY($1::uuid[])', [conflictList.map((c) => c.id)]);

  // 4. Which rows exist here already (by id): on a first import, none, and steps 5b–5c are skipped.
  const existing = (await conn.query('UPDATE import_batch b SET existing = true FROM users t WHERE t.id = b.id')).rowCount ?? 0;
  const fresh = rows - skipped - conflictList.length - existing;

  // 5a. New users with their details and live hash, in one statement, with their own timestamps.
  let imported = 0;
  if (fresh > 0) {
    const ins = await conn.query<{ imported: number }>(
      `WITH ins AS (
         INSERT INTO users (id, created_at, updated_at, upstream_id, email_domain)
         SELECT id, created_at, updated_at, upstream_id, email_domain FROM import_batch WHERE NOT existing
         ON CONFLICT DO NOTHING RETURNING id
       ), details AS (
         INSERT INTO user_details (user_id, email, first_name, last_name)
         SELECT b.id, b.email, b.first_name, b.last_name FROM import_batch b JOIN ins ON ins.id = b.id WHERE b.email IS NOT NULL
       ), passwords AS (
         INSERT INTO user_passwords (user_id, password_hash, created_at, updated_at)
         SELECT b.id, b.password_hash, b.password_created_at, b.password_updated_at FROM import_batch b JOIN ins ON ins.id = b.id
         WHERE b.password_hash IS NOT NULL AND b.password_deleted_at IS NULL
       )
       SELECT count(*)::int AS imported FROM ins`,
    );
    imported = ins.rows[0]!.imported;
  }
  // 5b. A user TMC created here between step 3 and 5a with the same upstream_id made its insert a no-op.
  if (imported < fresh) {
    const raced = await conn.query<{ id: string; upstream_id: number | null; existing_id: string }>(
      `SELECT s.id, s.upstream_id, o.id AS existing_id FROM import_batch s
       JOIN users o ON o.upstream_id = s.upstream_id AND o.deleted_at IS NULL AND o.id <> s.id
       WHERE NOT s.existing AND NOT EXISTS (SELECT 1 FROM users t WHERE t.id = s.id)`,
    );
    for (const r of raced.rows) conflictList.push({ id: r.id, upstreamId: r.upstream_id, existingId: r.existing_id, reason: 'upstream_id_taken' });
  }

  // 5c. Existing users: user and details overwritten if the source's row is newer; the hash if the
  // source's password row is newer (a password changed or re-hashed here since then is kept).
  let updated = 0;
  if (existing > 0) {
    const upd = await conn.query<{ updated: number }>(
      `WITH users_written AS (
         UPDATE users t SET created_at = s.created_at, updated_at = s.updated_at, upstream_id = s.upstream_id, email_domain = s.email_domain
         FROM import_batch s WHERE s.existing AND t.id = s.id AND s.updated_at > t.updated_at RETURNING t.id
       ), details AS (
         INSERT INTO user_details (user_id, email, first_name, last_name)
         SELECT b.id, b.email, b.first_name, b.last_name FROM import_batch b JOIN users_written w ON w.id = b.id WHERE b.email IS NOT NULL
         ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, updated_at = now()
       ), passwords_written AS (
         INSERT INTO user_passwords (user_id, password_hash, created_at, updated_at)
         SELECT id, password_hash, password_created_at, password_updated_at FROM import_batch
         WHERE existing AND password_hash IS NOT NULL AND password_deleted_at IS NULL
         ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = EXCLUDED.updated_at, deleted_at = NULL
           WHERE user_passwords.updated_at < EXCLUDED.updated_at
         RETURNING user_id AS id
       )
       SELECT count(*)::int AS updated FROM (SELECT id FROM users_written UNION SELECT id FROM passwords_written) w`,
    );
    updated = upd.rows[0]!.updated;
  }

  const conflicts = conflictList.length;
  return { rows, imported, updated, unchanged: rows - skipped - conflicts - imported - updated, skipped, conflicts, conflictList, lastId };
}

/**
 * Runs `fn` on one pooled connection of `db` inside BEGIN … COMMIT (or ROLLBACK when
 * `commit` is false or `fn` throws). A raw connection rather than a knex transaction, because
 * COPY streams need the pg client itself.
 */
async function inTransaction<T>(db: Knex, commit: boolean, fn: (conn: PgConnection) => Promise<T>): Promise<T> {
  const conn = (await db.client.acquireConnection()) as PgConnection;
  let broken = false;
  try {
    await conn.query('BEGIN');
    try {
      const result = await fn(conn);
      await conn.query(commit ? 'COMMIT' : 'ROLLBACK');
      return result;
    } catch (err) {
      await conn.query('ROLLBACK').catch(() => (broken = true));
      throw err;
    }
  } finally {
    if (broken) await (conn as unknown as { end(): Promise<void> }).end().catch(() => undefined);
    await db.client.releaseConnection(conn);
  }
}

/**
 * Writes one batch of an import and records its result under (importId, batchNo), in one
 * transaction. If that batch was already recorded (a retry after a commit whose
 * acknowledgement was lost), returns the recorded result and writes nothing.
 */
export async function applyImportBatch(db: Knex, importId: string, batchNo: number, load: BatchLoader): Promise<BatchResult> {
  const recorded = await recordedBatch(db, importId, batchNo);
  if (recorded) return recorded;
  try {
    return await inTransaction(db, true, async (conn) => {
      const result = await writeBatch(conn, load);
      await conn.query('INSERT INTO import_batches (import_id, batch_no, result) VALUES ($1, $2, $3)', [importId, batchNo, JSON.stringify(result)]);
      return result;
    });
  } catch (err) {
    // Two attempts of the same batch at once (a retry while a slow attempt still ran): one committed.
    if ((err as { code?: string }).code === '23505') {
      const winner = await recordedBatch(db, importId, batchNo);
      if (winner) return winner;
    }
    throw err;
  }
}

/** What the batch would do, computed in a transaction that is rolled back: nothing is written. */
export async function dryRunImportBatch(db: Knex, load: BatchLoader): Promise<BatchResult> {
  return inTransaction(db, false, (conn) => writeBatch(conn, load));
}

/** The result recorded for a committed batch, or undefined. */
export async function recordedBatch(db: Knex, importId: string, batchNo: number): Promise<BatchResult | undefined> {
  const row = await db('import_batches').where({ import_id: importId, batch_no: batchNo }).first<{ result: BatchResult } | undefined>('result');
  return row?.result;
}

/** Registers an import run with its source URL (kept here so it never enters Temporal). */
export async function createImportRun(db: Knex, importId: string, sourceUrl: string): Promise<void> {
  await db('import_runs').insert({ id: importId, source_url: sourceUrl });
}

/** The run's source URL, or undefined once the run has finished (or never existed). */
export async function importSourceUrl(db: Knex, importId: string): Promise<string | undefined> {
  const row = await db('import_runs').where({ id: importId }).first<{ source_url: string | null } | undefined>('source_url');
  return row?.source_url ?? undefined;
}

/** Marks the run finished and forgets its source URL. Idempotent. */
export async function finishImportRun(db: Knex, importId: string): Promise<void> {
  await db('import_runs').where({ id: importId }).update({ source_url: null, finished_at: db.raw('coalesce(finished_at, now())') });
}
