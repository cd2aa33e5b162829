/**
 * Users and password hashes: the queries behind the TMC endpoints and the creation workflow.
 * Functions take a knex instance or transaction, so callers own the transaction boundary.
 */
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { TmcUser } from '../tmc';

/** The `User` JSON of the TMC contract, field for field. */
export interface User {
  id: string;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  upstream_id: number | null;
  email_domain: string | null;
}

interface UserRow {
  id: string;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
  upstream_id: number | null;
  email_domain: string | null;
}

const USER_COLUMNS = ['id', 'created_at', 'updated_at', 'deleted_at', 'upstream_id', 'email_domain'];

export function toUser(row: UserRow): User {
  return {
    id: row.id,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    deleted_at: row.deleted_at ? row.deleted_at.toISOString() : null,
    upstream_id: row.upstream_id,
    email_domain: row.email_domain,
  };
}

export async function findActiveUserByUpstreamId(db: Knex, upstreamId: number): Promise<User | undefined> {
  const row = await db('users')
    .where({ upstream_id: upstreamId })
    .whereNull('deleted_at')
    .first<UserRow | undefined>(USER_COLUMNS);
  return row ? toUser(row) : undefined;
}

/** What follows the last `@` of the trimmed email, as headless-lms stores it. */
export function emailDomain(email: string): string | null {
  const trimmed = email.trim();
  const at = trimmed.lastIndexOf('@');
  return at >= 0 ? trimmed.slice(at + 1) : null;
}

function blankToNull(value: string | null | undefined): string | null {
  return value && value.trim() !== '' ? value.trim() : null;
}

/**
 * Returns the active user for the TMC user's id, creating it (with its details) if missing.
 * The new user's id is `preferredId` (mooc.fi's id for the person), else TMC's
 * `courses_mooc_fi_user_id`, else a new v4 UUID.
 *
 * Safe under concurrency: the insert yields to every uniqueness conflict (`ON CONFLICT DO
 * NOTHING` without a target covers the partial unique index on upstream_id *and* the primary
 * key), and the loser re-reads the winner's row. Concurrent creates that all take the id TMC
 * supplied otherwise failed on "users_pkey". If that id belongs to some other row (a deleted
 * user, or another upstream_id), the user gets a new UUID instead.
 */
export async function getOrCreateUserFromTmc(
  trx: Knex.Transaction,
  tmcUser: TmcUser,
  preferredId?: string,
): Promise<{ user: User; created: boolean }> {
  const existing = await findActiveUserByUpstreamId(trx, tmcUser.id);
  if (existing) return { user: existing, created: false };

  let id = (preferredId ?? tmcUser.courses_mooc_fi_user_id ?? randomUUID()).toLowerCase();
  for (let attempt = 1; ; attempt++) {
    const inserted = await trx.raw<{ rows: UserRow[] }>(
      `INSERT INTO users (id, upstream_id, email_domain) VALUES (?, ?, ?)
       ON CONFLICT DO NOTHING
       RETURNING ${USER_COLUMNS.join(', ')}`,
      [id, tmcUser.id, emailDomain(tmcUser.email)],
    );
    const row = inserted.rows[0];
    if (row) {
      await trx('user_details').insert({
        user_id: row.id,
        email: tmcUser.email.trim(),
        first_name: blankToNull(tmcUser.user_field?.first_name),
        last_name: blankToNull(tmcUser.user_field?.last_name),
      });
      return { user: toUser(row), created: true };
    }
    // Someone else's row won: a concurrent insert for this upstream_id (take it), or a row that
    // holds the id for another account (try again with a fresh id).
    const winner = await findActiveUserByUpstreamId(trx, tmcUser.id);
    if (winner) return { user: winner, created: false };
    if (attempt >= 3) throw new Error(`user for upstream_id ${tmcUser.id} could not be inserted (id conflicts)`);
    id = randomUUID();
  }
}

// ---- Abandoned attempts --------------------------------------------------------------------
//
// The create workflow's interactive step runs with a deadline. When the workflow gives up on an
// attempt (its timeout passed, or it was cancelled), that attempt may still be running in some
// worker and could commit the user and the hash after the workflow has decided there is none,
// leaving a password that TMC is never told about. So each attempt carries a token; the
// workflow, before deciding, records the token as abandoned; and the attempt's transaction
// checks the token before it commits. Both hold the same per-user advisory lock, so either the
// attempt committed first (and the workflow finds its rows) or it sees the fence and rolls back.

/** Serializes create transactions and fences of one TMC user, until the transaction ends. */
export async function lockTmcUser(trx: Knex.Transaction, upstreamId: number): Promise<void> {
  await trx.raw('SELECT pg_advisory_xact_lock(?, ?)', [TMC_USER_LOCK_CLASS, upstreamId]);
}

/** 'tmcu' as an int4: the advisory-lock namespace of TMC user creation. */
const TMC_USER_LOCK_CLASS = 0x746d6375;

/** True if the workflow has given up on `attempt`; call under lockTmcUser. */
export async function isAttemptAbandoned(trx: Knex.Transaction, attempt: string): Promise<boolean> {
  return (await trx('tmc_abandoned_attempts').where({ attempt }).first('attempt')) !== undefined;
}

/**
 * Records `attempt` as given up, so it can no longer commit, and returns the user with a live
 * password that any earlier attempt committed, if there is one. Idempotent.
 */
export async function abandonAttempt(db: Knex, upstreamId: number, attempt: string): Promise<User | undefined> {
  return db.transaction(async (trx) => {
    await lockTmcUser(trx, upstreamId);
    await trx.raw('INSERT INTO tmc_abandoned_attempts (attempt, upstream_id) VALUES (?, ?) ON CONFLICT DO NOTHING', [attempt, upstreamId]);
    // Fences outlive their attempts by far (an attempt runs for seconds); a day is plenty.
    await trx.raw("DELETE FROM tmc_abandoned_attempts WHERE created_at < now() - interval '1 day'");
    const row = await trx('users as u')
      .join('user_passwords as p', 'p.user_id', 'u.id')
      .where('u.upstream_id', upstreamId)
      .whereNull('u.deleted_at')
      .whereNull('p.deleted_at')
      .first<UserRow | undefined>(USER_COLUMNS.map((c) => `u.${c}`));
    return row ? toUser(row) : undefined;
  });
}

/** Sets the user's password hash, replacing any earlier one. */
export async function upsertPasswordHash(db: Knex, userId: string, passwordHash: string): Promise<void> {
  await db.raw(
    `INSERT INTO user_passwords (user_id, password_hash) VALUES (?, ?)
     ON CONFLICT (user_id) DO UPDATE
       SET password_hash = EXCLUDED.password_hash, updated_at = now(), deleted_at = NULL`,
    [userId, passwordHash],
  );
}

/**
 * Compare-and-swap: replaces the user's live hash with `newHash` only if it is still
 * `expectedHash`. True if it was replaced; false if a concurrent change (or a delete) got there
 * first, which then wins. Used to re-store a verified password in its current form.
 */
export async function replacePasswordHashIf(db: Knex, userId: string, expectedHash: string, newHash: string): Promise<boolean> {
  const updated = await db('user_passwords')
    .where({ user_id: userId, password_hash: expectedHash })
    .whereNull('deleted_at')
    .update({ password_hash: newHash, updated_at: db.fn.now() });
  return updated === 1;
}

/** The stored hash of an active user who may log in, or undefined. */
export async function findLoginHash(db: Knex, userId: string): Promise<string | undefined> {
  const row = await db('user_passwords as p')
    .join('users as u', 'u.id', 'p.user_id')
    .where('p.user_id', userId)
    .whereNull('p.deleted_at')
    .whereNull('u.deleted_at')
    .where('u.status', 'active')
    .first<{ password_hash: string } | undefined>('p.password_hash');
  return row?.password_hash;
}

export async function userExists(db: Knex, userId: string): Promise<boolean> {
  const row = await db('users').where({ id: userId }).whereNull('deleted_at').first('id');
  return row !== undefined;
}

export interface UpstreamStatus {
  shadow_user_exists: boolean;
  courses_mooc_fi_user_id: string | null;
  password_set: boolean;
  deleted_at: string | null;
}

/** The read-only status TMC's admin UI shows; never creates anything. */
export async function upstreamStatus(db: Knex, upstreamId: number): Promise<UpstreamStatus> {
  const row = await db('users as u')
    .leftJoin('user_passwords as p', function joinLivePassword() {
      this.on('p.user_id', '=', 'u.id').andOnNull('p.deleted_at');
    })
    .where('u.upstream_id', upstreamId)
    .orderByRaw('u.deleted_at IS NULL DESC, u.created_at DESC')
    .first<{ id: string; deleted_at: Date | null; password_hash: string | null } | undefined>('u.id', 'u.deleted_at', 'p.password_hash');
  if (!row) return { shadow_user_exists: false, courses_mooc_fi_user_id: null, password_set: false, deleted_at: null };
  return {
    shadow_user_exists: true,
    courses_mooc_fi_user_id: row.id,
    password_set: row.password_hash !== null,
    deleted_at: row.deleted_at ? row.deleted_at.toISOString() : null,
  };
}

export type NotificationOutcome = 'delivered' | 'tmc_user_not_found';

export async function recordNotificationOutcome(
  db: Knex,
  userId: string,
  upstreamId: number,
  outcome: NotificationOutcome,
): Promise<void> {
  await db.raw(
    `INSERT INTO tmc_password_notifications (user_id, upstream_id, outcome) VALUES (?, ?, ?)
     ON CONFLICT (user_id) DO UPDATE
       SET outcome = EXCLUDED.outcome, deliveries = tmc_password_notifications.deliveries + 1, updated_at = now()`,
    [userId, upstreamId, outcome],
  );
}
