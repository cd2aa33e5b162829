/** Tenants, signups, verification tokens and audit events: the queries behind signup. */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Knex } from 'knex';

export interface Tenant {
  id: string;
  identifier: string;
  display_name: string;
  status: 'active' | 'suspended';
  created_at: Date;
}

export type SignupRowState = 'awaiting_verification' | 'activating' | 'active' | 'expired';

export interface SignupRow {
  id: string;
  tenant_id: string;
  identifier: string;
  user_id: string;
  workflow_id: string;
  email: string;
  display_name: string;
  password_hash: string | null;
  state: SignupRowState;
  emails_sent: number;
  last_email_sent_at: Date | null;
  expires_at: Date;
  created_at: Date;
}

export type AuditEventType =
  | 'signup_started'
  | 'signup_verification_sent'
  | 'signup_resumed'
  | 'signup_completed'
  | 'signup_expired'
  | 'signup_existing_account_notified';

export async function recordAudit(
  db: Knex,
  event: { type: AuditEventType; userId?: string | null; tenantId?: string | null; requestId?: string | null; details?: Record<string, unknown> },
): Promise<void> {
  await db('audit_events').insert({
    event_type: event.type,
    user_id: event.userId ?? null,
    tenant_id: event.tenantId ?? null,
    request_id: event.requestId ?? null,
    details: event.details ? JSON.stringify(event.details) : null,
  });
}

// ---- tenants ---------------------------------------------------------------------------------

export async function findTenant(db: Knex, identifier: string): Promise<Tenant | undefined> {
  return db('tenants').where({ identifier }).first<Tenant | undefined>();
}

export async function listTenants(db: Knex): Promise<Tenant[]> {
  return db('tenants').orderBy('identifier');
}

export async function addTenant(db: Knex, identifier: string, displayName: string): Promise<Tenant> {
  const [row] = await db('tenants').insert({ identifier, display_name: displayName }).returning('*');
  return row as Tenant;
}

export async function setTenantStatus(db: Knex, identifier: string, status: Tenant['status']): Promise<boolean> {
  const n = await db('tenants').where({ identifier }).update({ status, updated_at: db.fn.now() });
  return n > 0;
}

// ---- identities ------------------------------------------------------------------------------

/** The identifier an email is known by within a tenant: trimmed and lower-cased. */
export function identifierOf(email: string): string {
  return email.trim().toLowerCase();
}

export async function findActiveUserByIdentifier(db: Knex, tenantId: string, identifier: string): Promise<{ id: string } | undefined> {
  return db('users')
    .where({ tenant_id: tenantId, identifier, status: 'active' })
    .whereNull('deleted_at')
    .first<{ id: string } | undefined>('id');
}

// ---- signups ---------------------------------------------------------------------------------

export async function findPendingSignup(db: Knex, tenantId: string, identifier: string): Promise<SignupRow | undefined> {
  return db('signups')
    .where({ tenant_id: tenantId, identifier })
    .whereIn('state', ['awaiting_verification', 'activating'])
    .first<SignupRow | undefined>();
}

export async function findSignup(db: Knex, id: string): Promise<SignupRow | undefined> {
  return db('signups').where({ id }).first<SignupRow | undefined>();
}

/**
 * Reserves the identifier for a new signup. Returns undefined when another signup for it is
 * already pending: the unique index on pending (tenant, identifier) lets exactly one win.
 */
export async function reserveSignup(
  db: Knex,
  input: { tenantId: string; identifier: string; email: string; displayName: string; passwordHash: string; expiresAt: Date },
): Promise<SignupRow | undefined> {
  const id = randomUUID();
  const userId = randomUUID();
  const result = await db.raw<{ rows: SignupRow[] }>(
    `INSERT INTO signups (id, tenant_id, identifier, user_id, workflow_id, email, display_name, password_hash, state, expires_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'awaiting_verification', ?)
     ON CONFLICT (tenant_id, identifier) WHERE state IN ('awaiting_verification', 'activating') DO NOTHING
     RETURNING *`,
    [id, input.tenantId, input.identifier, userId, `signup-${userId}`, input.email, input.displayName, input.passwordHash, input.expiresAt],
  );
  return result.rows[0];
}

/**
 * Ends a pending signup: marks it expired and removes the candidate and its tokens, in one
 * transaction. With `pastExpiryOnly`, only a signup whose expiry has passed (one whose workflow
 * an operator terminated, so nothing else will expire it). False if there was nothing to do.
 */
export async function expireSignupRow(
  db: Knex,
  signupId: string,
  options: { reason: 'timeout' | 'cancelled'; requestId?: string; pastExpiryOnly?: boolean },
): Promise<boolean> {
  return db.transaction(async (trx) => {
    const signup = await trx('signups').where({ id: signupId }).forUpdate().first<SignupRow | undefined>();
    if (!signup || (signup.state !== 'awaiting_verification' && signup.state !== 'activating')) return false;
    if (options.pastExpiryOnly && signup.expires_at.getTime() > Date.now()) return false;
    await trx('verification_tokens').where({ signup_id: signupId }).delete();
    await trx('users').where({ id: signup.user_id, status: 'candidate' }).delete();
    await trx('signups').where({ id: signupId }).update({ state: 'expired', password_hash: null, updated_at: trx.fn.now() });
    await recordAudit(trx, { type: 'signup_expired', userId: signup.user_id, tenantId: signup.tenant_id, requestId: options.requestId, details: { reason: options.reason } });
    return true;
  });
}

/** Undoes a reservation whose workflow could not be started, so nothing half-written stays. */
export async function releaseReservation(db: Knex, signupId: string): Promise<void> {
  await db('signups').where({ id: signupId, emails_sent: 0 }).whereNotExists(db('users').whereRaw('users.id = signups.user_id')).delete();
}

// ---- verification tokens ---------------------------------------------------------------------

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** A new single-use token: 32 random bytes, base64url. Only its SHA-256 is stored. */
export function newToken(): { token: string; hash: Buffer } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: hashToken(token) };
}

export const TOKEN_FORMAT = /^[A-Za-z0-9_-]{43}$/;

export interface FoundToken {
  tokenId: string;
  /** Confirmed before: claimed by an earlier request (whose answer may never have arrived). */
  used: boolean;
  /** The link can still confirm: the token is unexpired and its signup pending (or active). */
  valid: boolean;
  signupState: SignupRow['state'];
  signupId: string;
  workflowId: string;
  userId: string;
  tenantId: string;
  tenantIdentifier: string;
  /**
   * The argon2 hash a confirmation must match: that of the signup attempt whose mail carried the
   * token, or, once claimed, the one its confirmation chose. Null only for tokens older than
   * migration 004 whose signup had no hash to copy.
   */
  passwordHash: string | null;
}

/**
 * The token and its signup, whatever their state: the page of an expired link still offers a
 * new one, for the right tenant. Undefined for a token that does not exist (never issued,
 * replaced by a resend, or removed when its signup expired).
 */
export async function findToken(db: Knex, token: string): Promise<FoundToken | undefined> {
  const hash = hashToken(token);
  const row = await db('verification_tokens as t')
    .join('signups as s', 's.id', 't.signup_id')
    .join('tenants as n', 'n.id', 's.tenant_id')
    .where('t.token_hash', hash)
    .first<
      | { token_hash: Buffer; id: string; used_at: Date | null; live: boolean; state: SignupRow['state']; signup_id: string; workflow_id: string; user_id: string; tenant_id: string; tenant_identifier: string; password_hash: string | null }
      | undefined
    >(
      't.token_hash', 't.id', 't.used_at', db.raw('t.expires_at > now() AS live'), 's.state', 't.signup_id', 's.workflow_id', 's.user_id', 's.tenant_id',
      'n.identifier as tenant_identifier', 't.password_hash',
    );
  // The index finds the row by hash; the final comparison is constant-time all the same.
  if (!row || !timingSafeEqual(row.token_hash, hash)) return undefined;
  return {
    tokenId: row.id,
    used: row.used_at !== null,
    valid: row.live && row.state !== 'expired',
    signupState: row.state,
    signupId: row.signup_id,
    workflowId: row.workflow_id,
    userId: row.user_id,
    tenantId: row.tenant_id,
    tenantIdentifier: row.tenant_identifier,
    passwordHash: row.password_hash,
  };
}

/**
 * Claims a token for its confirmation: marks it used (if it was not) and leaves on it the hash of
 * the password the confirmation chose, which activation then sets. Only while the token is
 * unexpired and its signup pending; the signup row is locked (shared) first, so a claim either
 * lands before an activation reads the token or sees the signup active and changes nothing.
 * A claimed token survives rotation (which deletes only unused tokens), so a resend racing with
 * the confirmation cannot void it, and only a claimed token activates its signup.
 *
 * Returns 'claimed' (used now for the first time), 'reclaimed' (used before: a confirmation whose
 * answer was lost, repeated) or 'not_pending'.
 */
export async function claimToken(
  db: Knex,
  tokenId: string,
  passwordHash: string,
  /** true for a new password: the attempt's display name is not known to be the link holder's, so the account gets none. */
  dropName = false,
): Promise<'claimed' | 'reclaimed' | 'not_pending'> {
  return db.transaction(async (trx) => {
    const row = await trx('verification_tokens as t')
      .join('signups as s', 's.id', 't.signup_id')
      .where('t.id', tokenId)
      .where('t.expires_at', '>', trx.fn.now())
      .whereIn('s.state', ['awaiting_verification', 'activating'])
      .forShare('s')
      .first<{ used_at: Date | null } | undefined>('t.used_at');
    if (!row) return 'not_pending';
    await trx('verification_tokens')
      .where({ id: tokenId })
      .update({ used_at: row.used_at ?? trx.fn.now(), password_hash: passwordHash, ...(dropName ? { display_name: '' } : {}) });
    return row.used_at ? 'reclaimed' : 'claimed';
  });
}

/** Gives a first claim back when the workflow could not be told (Temporal unavailable). */
export async function unclaimToken(db: Knex, tokenId: string): Promise<void> {
  await db('verification_tokens').where({ id: tokenId }).update({ used_at: null });
}

/**
 * A repeated signup for a pending identifier: its password hash and display name become the
 * signup's latest attempt, which the next verification mail carries. Links already sent keep
 * the attempt they were sent for. False if the signup is no longer pending.
 */
export async function recordAttempt(db: Knex, signupId: string, attempt: { passwordHash: string; displayName: string }): Promise<boolean> {
  const n = await db('signups')
    .where({ id: signupId })
    .whereIn('state', ['awaiting_verification', 'activating'])
    .update({ password_hash: attempt.passwordHash, display_name: attempt.displayName, updated_at: db.fn.now() });
  return n > 0;
}
