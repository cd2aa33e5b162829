/*!
 * Handlers for `/api/v0/signups…`: self-service signup with email verification. Public: no
 * shared secret; called by users' browsers and the tenant's sign-up pages.
 *
 * - `POST /api/v0/signups`: starts (or resumes) a signup and emails a verification link.
 * - `GET /api/v0/signups/verify?token=…`: the link in the email; activates the user.
 * - `POST /api/v0/signups/resend`: a fresh link for a pending signup, throttled.
 *
 * Each signup is a durable signupWorkflow (src/workflows/signup.ts).
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Client } from '@temporalio/client';
import type { Config } from '../config';
import type { Db } from '../db';
import {
  claimToken,
  unclaimToken,
  findActiveUserByIdentifier,
  findPendingSignup,
  findSignup,
  findTenant,
  findValidToken,
  identifierOf,
  recordAudit,
  releaseReservation,
  reserveSignup,
  TOKEN_FORMAT,
  type SignupRow,
  type Tenant,
} from '../db/signups';
import type { HashQueue } from '../hashing';
import { MAX_PASSWORD_BYTES, passwordTooLong } from '../passwords';
import { notifyExistingAccount, resumeSignup, signalEmailVerified, startSignup, type SignupStart } from '../temporal/starters';
import type { Logger } from '../logger';
import { answerWithin } from './deadline';
import { ApiError } from './errors';
import { jsonBody, parse } from './validation';

export interface SignupDeps {
  config: Config;
  db: Db;
  temporal: Client;
  log: Logger;
  /** Where argon2 work runs (src/hashing.ts). */
  hashes: HashQueue;
}

/**
 * Every signup call is answered within this long of its arrival (503 + Retry-After past it):
 * under a burst, argon2 queues and a slow dependency must not turn into a hung browser.
 */
export const SIGNUP_DEADLINE_MS = 10_000;
/** Calls to Temporal end this long before the deadline, leaving time to roll back and answer. */
const TEMPORAL_MARGIN_MS = 1_500;
const temporalDeadline = (ctx: Context): number => ctx.state.deadline - TEMPORAL_MARGIN_MS;

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
/** axess's rule: no control characters and no byte-order mark (nor lone surrogates). */
const printable = (s: string) => !/[\p{Cc}\p{Cs}\uFEFF]/u.test(s);

const tenantField = z
  .string()
  .refine((s) => bytes(s) >= 1 && bytes(s) <= 256, 'must be 1 to 256 bytes')
  .refine(printable, 'must be printable')
  // Documentation only (the OpenAPI document): JSON Schema cannot express these refinements.
  .meta({ description: 'The tenant identifier: 1 to 256 bytes of UTF-8, printable (no control characters, no BOM).' });
const emailField = z
  .string()
  .refine((s) => bytes(s) >= 1 && bytes(s) <= 254, 'must be 1 to 254 bytes')
  .refine(printable, 'must be printable')
  .refine((s) => z.email().safeParse(s.trim()).success, 'must be a valid email address')
  .meta({ description: 'A valid email address (surrounding whitespace is trimmed): 1 to 254 bytes of UTF-8, printable.' });

export const signupRequest = z.object({
  tenant: tenantField,
  email: emailField,
  display_name: z
    .string()
    .refine((s) => bytes(s) <= 256, 'must be at most 256 bytes')
    .refine(printable, 'must be printable')
    .meta({ description: 'At most 256 bytes of UTF-8, printable (no control characters, no BOM).' }),
  password: z
    .string()
    .refine((p) => !passwordTooLong(p), `must be at most ${MAX_PASSWORD_BYTES} bytes`)
    .refine((p) => [...p.normalize('NFC')].length >= 8, 'must be at least 8 characters')
    .meta({ description: `At least 8 characters (after NFC normalization) and at most ${MAX_PASSWORD_BYTES} bytes of UTF-8.` }),
});
export const resendRequest = z.object({ tenant: tenantField, email: emailField });

const VERIFICATION_SENT = { status: 'verification_sent' } as const;
const LINK_INVALID = 'This link is invalid, was already used, or has expired.';

export function signupRoutes({ config, db, temporal, log, hashes }: SignupDeps): Router {
  const queue = config.temporal.taskQueue;
  const startOf = (s: SignupRow, tenant: Pick<Tenant, 'id' | 'identifier'>, requestId?: string): SignupStart => ({
    signupId: s.id,
    userId: s.user_id,
    tenantId: tenant.id,
    tenantIdentifier: tenant.identifier,
    expiresAt: s.expires_at,
    resendIntervalMs: config.signup.resendIntervalMs,
    requestId,
  });

  /**
   * POST `/api/v0/signups` `{tenant, email, display_name, password}`
   *
   * Answers 202 `{"status":"verification_sent"}` for a new signup, for a pending one (which is
   * resumed, its password unchanged) and, unless SIGNUP_REVEAL_EXISTING, for an active account.
   */
  async function createSignup(ctx: Context) {
    // 0. Reject oversized or invalid inputs before any I/O.
    const body = parse(signupRequest, jsonBody(ctx));
    const requestId: string = ctx.state.requestId;

    // 1. The tenant must exist and be active.
    const tenant = await findTenant(db, body.tenant);
    if (!tenant || tenant.status !== 'active') throw new ApiError(422, 'tenant_not_active');

    // 2. An active account is never touched: it gets a notice, the caller the usual answer.
    const identifier = identifierOf(body.email);
    const active = await findActiveUserByIdentifier(db, tenant.id, identifier);
    if (active) {
      if (config.signup.revealExisting) throw new ApiError(409, 'already_exists');
      await notifyExistingAccount(temporal, queue, { userId: active.id, tenantId: tenant.id, resendIntervalMs: config.signup.resendIntervalMs }, temporalDeadline(ctx));
      ctx.status = 202;
      ctx.body = VERIFICATION_SENT;
      return;
    }

    // 3. A pending signup is resumed, not replaced. Its password stays as it is: whoever comes
    //    second must not be able to take over the account before its owner verifies it.
    let pending = await findPendingSignup(db, tenant.id, identifier);
    if (!pending) {
      // A hash that cannot be done before the answer is due is not started (503 instead).
      const passwordHash = await hashes.hash(body.password, { deadline: ctx.state.deadline - 500, signal: ctx.state.callerGone });
      const expiresAt = new Date(Date.now() + config.signup.verificationTtlMs);
      const reserved = await reserveSignup(db, { tenantId: tenant.id, identifier, email: body.email.trim(), displayName: body.display_name, passwordHash, expiresAt });
      if (reserved) {
        try {
          await startSignup(temporal, queue, startOf(reserved, tenant, requestId), temporalDeadline(ctx));
        } catch (err) {
          await releaseReservation(db, reserved.id).catch(() => undefined);
          throw err;
        }
        ctx.status = 202;
        ctx.body = VERIFICATION_SENT;
        return;
      }
      // Another request reserved it a moment ago.
      pending = await findPendingSignup(db, tenant.id, identifier);
      if (!pending) throw new ApiError(503, 'The signup could not be recorded; try again.');
    }
    await resumeSignup(temporal, queue, startOf(pending, tenant, requestId), temporalDeadline(ctx));
    await recordAudit(db, { type: 'signup_resumed', userId: pending.user_id, tenantId: tenant.id, requestId });
    ctx.status = 202;
    ctx.body = VERIFICATION_SENT;
  }

  /**
   * GET `/api/v0/signups/verify?token=…`
   *
   * 200 once the user is active (JSON if asked for, else a small HTML page). Unknown and expired
   * tokens, and tokens of expired signups, get 410 with the same message.
   *
   * Clicking again is idempotent: a link already used answers as the first click did (200 once
   * the signup is active). That matters after a failure: a click whose answer was a 503 (say,
   * PostgreSQL went away after the workflow had been told) must not turn into "link invalid"
   * on the retry the 503 asked for. A used token of a signup that is still pending signals the
   * workflow again; the workflow ignores a token id it has seen.
   */
  async function verify(ctx: Context) {
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    const valid = TOKEN_FORMAT.test(token) ? await findValidToken(db, token) : undefined;
    if (!valid) throw new ApiError(410, LINK_INVALID);
    if (valid.signupState !== 'active') {
      // The first click claims the token, so a mail retried meanwhile cannot rotate it away.
      const claimedNow = !valid.used && (await claimToken(db, valid.tokenId));
      try {
        await signalEmailVerified(temporal, valid.workflowId, valid.tokenId, temporalDeadline(ctx));
      } catch (err) {
        if (claimedNow) await unclaimToken(db, valid.tokenId).catch(() => undefined);
        throw err;
      }
    }
    // Wait for the activation, but answer (202, activating) comfortably before the deadline.
    const outcome = valid.signupState === 'active' ? 'active' : await waitForOutcome(valid.signupId, Math.min(8_000, ctx.state.deadline - Date.now() - 500));
    if (outcome === 'expired') throw new ApiError(410, LINK_INVALID);
    const wantsJson = ctx.accepts('html', 'json') === 'json';
    if (outcome === 'active') {
      ctx.status = 200;
      ctx.body = wantsJson ? { status: 'active', user_id: valid.userId } : page('Email confirmed', 'Your account is now active. You can close this page and sign in.');
    } else {
      // Still activating (a slow worker): the workflow will finish it.
      ctx.status = 202;
      ctx.body = wantsJson ? { status: 'activating', user_id: valid.userId } : page('Almost done', 'Your email is confirmed; your account is being activated.');
    }
  }

  async function waitForOutcome(signupId: string, timeoutMs: number): Promise<'active' | 'expired' | 'pending'> {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 25; ; delay = Math.min(delay * 2, 250)) {
      const s = await findSignup(db, signupId);
      if (s?.state === 'active') return 'active';
      if (!s || s.state === 'expired') return 'expired';
      if (Date.now() + delay > deadline) return 'pending';
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /**
   * POST `/api/v0/signups/resend` `{tenant, email}`
   *
   * Always 202 `{"status":"verification_sent"}`. If a signup is pending and its last email went
   * out over SIGNUP_RESEND_INTERVAL ago, the workflow sends a fresh link.
   */
  async function resend(ctx: Context) {
    const body = parse(resendRequest, jsonBody(ctx));
    const tenant = await findTenant(db, body.tenant);
    const pending = tenant?.status === 'active' ? await findPendingSignup(db, tenant.id, identifierOf(body.email)) : undefined;
    if (tenant && pending) {
      const last = pending.last_email_sent_at?.getTime() ?? 0;
      if (Date.now() - last >= config.signup.resendIntervalMs) {
        await resumeSignup(temporal, queue, startOf(pending, tenant, ctx.state.requestId), temporalDeadline(ctx));
      }
    }
    ctx.status = 202;
    ctx.body = VERIFICATION_SENT;
  }

  const router = new Router({ prefix: '/api/v0/signups' });
  router.use(answerWithin(SIGNUP_DEADLINE_MS, log));
  router.post('/', createSignup);
  router.get('/verify', verify);
  router.post('/resend', resend);
  return router;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, message: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto; padding: 0 1rem">
<h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>`;
}
