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

export interface ValidToken {
  tokenId: string;
  /** Clicked before: claimed by an earlier request (whose answer may never have arrived). */
  used: boolean;
  signupState: SignupRow['state'];
  signupId: string;
  workflowId: string;
  userId: string;
  tenantId: string;
}

/**
 * Claims a token for its click: marks it used, if it still is unused and unexpired. A claimed
 * token survives rotation (which deletes only unused tokens), so a resend racing with the click
 * cannot void it, and only a claimed token activates its signup.
 */
export async function claimToken(db: Knex, tokenId: string): Promise<boolean> {
  const n = await db('verification_tokens').where({ id: tokenId }).whereNull('used_at').where('expires_at', '>', db.fn.now()).update({ used_at: db.fn.now() });
  return n > 0;
}

/** Gives a claim back when the workflow could not be told (Temporal unavailable). */
export async function unclaimToken(db: Knex, tokenId: string): Promise<void> {
  await db('verification_tokens').where({ id: tokenId }).update({ used_at: null });
}

/**
 * The signup an unexpired token belongs to, with whether the token was used (clicked) already and
 * the signup's state. Unknown and expired tokens, and tokens of expired signups: undefined.
 */
export async function findValidToken(db: Knex, token: string): Promise<ValidToken | undefined> {
  const hash = hashToken(token);
  const row = await db('verification_tokens as t')
    .join('signups as s', 's.id', 't.signup_id')
    .where('t.token_hash', hash)
    .where('t.expires_at', '>', db.fn.now())
    .whereIn('s.state', ['awaiting_verification', 'activating', 'active'])
    .first<{ token_hash: Buffer; id: string; used_at: Date | null; state: SignupRow['state']; signup_id: string; workflow_id: string; user_id: string; tenant_id: string } | undefined>(
      't.token_hash', 't.id', 't.used_at', 's.state', 't.signup_id', 's.workflow_id', 's.user_id', 's.tenant_id',
    );
  // The index finds the row by hash; the final comparison is constant-time all the same.
  if (!row || !timingSafeEqual(row.token_hash, hash)) return undefined;
  return { tokenId: row.id, used: row.used_at !== null, signupState: row.state, signupId: row.signup_id, workflowId: row.workflow_id, userId: row.user_id, tenantId: row.tenant_id };
}
