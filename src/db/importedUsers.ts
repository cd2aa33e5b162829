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
import type { Knex } from 'knex';

export type ConflictReason = 'upstream_id_taken' | 'deleted_here';

/** A source row that was not imported. Ids only: no email or name enters Temporal or logs. */
export interface ImportConflict {
  id: string;
  upstreamId: number | null;
  /** The user here that holds the upstream_id (or the deleted user with this id). */
  existingId: string;
  reason: ConflictReason;
}

export interface BatchCounts {
  rows: number;
  imported: number;
  updated: number;
  unchanged: number;
  skipped: number;
  conflicts: number;
}

export interface BatchResult extends BatchCounts {
  conflictList: ImportConflict[];
  /** The batch's largest source id: the next batch starts after it. Null for an empty batch. */
  lastId: string | null;
}

class DryRunRollback extends Error {
  constructor(readonly result: BatchResult) {
    super('dry run');
  }
}

/** The row shape of db/headlessLms.ts readSourceBatch, as a temporary table. */
const BATCH_TABLE = `CREATE TEMP TABLE import_batch (
  id uuid PRIMARY KEY, created_at timestamptz, updated_at timestamptz, deleted_at timestamptz,
  upstream_id integer, email_domain text, email text, first_name text, last_name text,
  password_hash text, password_created_at timestamptz, password_updated_at timestamptz, password_deleted_at timestamptz
) ON COMMIT DROP`;

const ids = (result: { rows: Array<{ id: string }> }) => result.rows.map((r) => r.id);

/** Steps 1–6 on a transaction; the caller commits (import) or rolls back (dry run). */
async function writeBatch(trx: Knex.Transaction, { rowsJson, lastId }: { rowsJson: string; lastId: string | null }): Promise<BatchResult> {
  // 1. The batch as a table, so the rest is set-based.
  await trx.raw(BATCH_TABLE);
  const loaded = await trx.raw('INSERT INTO import_batch SELECT * FROM json_populate_recordset(NULL::import_batch, ?::json)', [rowsJson]);
  const rows = loaded.rowCount as number;

  // 2. Deleted in the source: skipped.
  const skipped = (await trx.raw('DELETE FROM import_batch WHERE deleted_at IS NOT NULL')).rowCount as number;

  // 3. Conflicts: reported, then left out of every write below.
  const conflictRows = await trx.raw<{ rows: Array<{ id: string; upstream_id: number | null; existing_id: string; reason: ConflictReason }> }>(
    `SELECT DISTINCT ON (id) * FROM (
       SELECT s.id, s.upstream_id, o.id AS existing_id, 'upstream_id_taken' AS reason
         FROM import_batch s JOIN users o ON o.upstream_id = s.upstream_id AND o.deleted_at IS NULL AND o.id <> s.id
       UNION ALL
       SELECT s.id, s.upstream_id, t.id, 'deleted_here' FROM import_batch s JOIN users t ON t.id = s.id AND t.deleted_at IS NOT NULL
     ) c ORDER BY id, reason DESC`,
  );
  const conflictList: ImportConflict[] = conflictRows.rows.map((r) => ({ id: r.id, upstreamId: r.upstream_id, existingId: r.existing_id, reason: r.reason }));
  if (conflictList.length > 0) await trx.raw('DELETE FROM import_batch WHERE id = ANY(?::uuid[])', [conflictList.map((c) => c.id)]);

  // 4. Users: new ones inserted with their own timestamps; existing ones overwritten if the source is newer.
  const inserted = ids(
    await trx.raw(
      `INSERT INTO users (id, created_at, updated_at, upstream_id, email_domain)
       SELECT id, created_at, updated_at, upstream_id, email_domain FROM import_batch
       ON CONFLICT DO NOTHING RETURNING id`,
    ),
  );
  // A user TMC created here between step 3 and 4 with the same upstream_id makes the insert a no-op.
  const raced = await trx.raw<{ rows: Array<{ id: string; upstream_id: number | null; existing_id: string }> }>(
    `SELECT s.id, s.upstream_id, o.id AS existing_id FROM import_batch s
     JOIN users o ON o.upstream_id = s.upstream_id AND o.deleted_at IS NULL AND o.id <> s.id
     WHERE NOT EXISTS (SELECT 1 FROM users t WHERE t.id = s.id)`,
  );
  for (const r of raced.rows) conflictList.push({ id: r.id, upstreamId: r.upstream_id, existingId: r.existing_id, reason: 'upstream_id_taken' });
  if (raced.rows.length > 0) await trx.raw('DELETE FROM import_batch WHERE id = ANY(?::uuid[])', [raced.rows.map((r) => r.id)]);

  const usersUpdated = ids(
    await trx.raw(
      `UPDATE users t SET created_at = s.created_at, updated_at = s.updated_at, upstream_id = s.upstream_id, email_domain = s.email_domain
       FROM import_batch s WHERE t.id = s.id AND s.updated_at > t.updated_at RETURNING t.id`,
    ),
  );

  // 5. Details of the users written in step 4.
  const written = [...inserted, ...usersUpdated];
  if (written.length > 0) {
    await trx.raw(
      `INSERT INTO user_details (user_id, email, first_name, last_name)
       SELECT id, email, first_name, last_name FROM import_batch WHERE email IS NOT NULL AND id = ANY(?::uuid[])
       ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, updated_at = now()`,
      [written],
    );
  }

  // 6. Live password hashes: new ones, and newer ones than here.
  const passwordsWritten = ids(
    await trx.raw(
      `INSERT INTO user_passwords (user_id, password_hash, created_at, updated_at)
       SELECT id, password_hash, password_created_at, password_updated_at FROM import_batch
       WHERE password_hash IS NOT NULL AND password_deleted_at IS NULL
       ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = EXCLUDED.updated_at, deleted_at = NULL
         WHERE user_passwords.updated_at < EXCLUDED.updated_at
       RETURNING user_id AS id`,
    ),
  );

  const importedSet = new Set(inserted);
  const updated = new Set([...usersUpdated, ...passwordsWritten].filter((id) => !importedSet.has(id))).size;
  const imported = inserted.length;
  const conflicts = conflictList.length;
  return { rows, imported, updated, unchanged: rows - skipped - conflicts - imported - updated, skipped, conflicts, conflictList, lastId };
}

/**
 * Writes one batch of an import and records its result under (importId, batchNo), in one
 * transaction. If that batch was already recorded (a retry after a commit whose
 * acknowledgement was lost), returns the recorded result and writes nothing.
 */
export async function applyImportBatch(db: Knex, importId: string, batchNo: number, batch: { rowsJson: string; lastId: string | null }): Promise<BatchResult> {
  const recorded = await recordedBatch(db, importId, batchNo);
  if (recorded) return recorded;
  try {
    return await db.transaction(async (trx) => {
      const result = await writeBatch(trx, batch);
      await trx('import_batches').insert({ import_id: importId, batch_no: batchNo, result: JSON.stringify(result) });
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
export async function dryRunImportBatch(db: Knex, batch: { rowsJson: string; lastId: string | null }): Promise<BatchResult> {
  try {
    await db.transaction(async (trx) => {
      throw new DryRunRollback(await writeBatch(trx, batch));
    });
  } catch (err) {
    if (err instanceof DryRunRollback) return err.result;
    throw err;
  }
  throw new Error('unreachable');
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
