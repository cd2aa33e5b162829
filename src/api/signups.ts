/*!
 * Handlers for `/api/v0/signups…`: self-service signup with email verification. Public: no
 * shared secret; called by users' browsers and the tenant's sign-up pages.
 *
 * - `POST /api/v0/signups`: starts (or resumes) a signup and emails a verification link.
 * - `GET /api/v0/signups/verify?token=…`: the link in the email. Only shows (a page with a form
 *   for a pending signup); changes nothing, since mail scanners and link previews open links too.
 * - `POST /api/v0/signups/verify`: confirms, with the signup's password or a new one; activates.
 * - `POST /api/v0/signups/resend`: a fresh link for a pending signup, throttled.
 *
 * Browsers get HTML pages (src/api/pages.ts), clients asking for JSON get JSON. Each signup is a
 * durable signupWorkflow (src/workflows/signup.ts).
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Client } from '@temporalio/client';
import type { Config } from '../config';
import type { Db } from '../db';
import {
  claimToken,
  expireSignupRow,
  unclaimToken,
  findActiveUserByIdentifier,
  findPendingSignup,
  findSignup,
  findTenant,
  findToken,
  identifierOf,
  recordAttempt,
  recordAudit,
  releaseReservation,
  reserveSignup,
  TOKEN_FORMAT,
  type FoundToken,
  type SignupRow,
  type Tenant,
} from '../db/signups';
import type { HashQueue } from '../hashing';
import { MAX_PASSWORD_BYTES, passwordTooLong } from '../passwords';
import { notifyExistingAccount, restartVerifiedSignup, resumeSignup, signalEmailVerified, startSignup, type SignupStart } from '../temporal/starters';
import type { Logger } from '../logger';
import { answerWithin } from './deadline';
import { ApiError, errorBody, toApiError } from './errors';
import { PAGE_HEADERS, pages, type Page } from './pages';
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
/**
 * How often a confirmation reads its signup's row while the activation is fresh (ms), and for how
 * long: ~40 primary-key reads, then one per 250 ms (~70 in all over an 8 s wait on a slow worker).
 */
const OUTCOME_POLL_MS = 15;
const OUTCOME_FAST_POLL_FOR_MS = 600;

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
  password: newPasswordField(),
});
export const resendRequest = z.object({ tenant: tenantField, email: emailField });

/** The rules for a password someone chooses (at signup, or with the link). */
function newPasswordField() {
  return z
    .string()
    .refine((p) => !passwordTooLong(p), `must be at most ${MAX_PASSWORD_BYTES} bytes`)
    .refine((p) => [...p.normalize('NFC')].length >= 8, 'must be at least 8 characters')
    .meta({ description: `At least 8 characters (after NFC normalization) and at most ${MAX_PASSWORD_BYTES} bytes of UTF-8.` });
}

export const confirmRequest = z
  .strictObject({
    token: z.string().max(256).meta({ description: 'The `token` of the link in the verification mail.' }),
    password: z
      .string()
      .refine((p) => !passwordTooLong(p), `must be at most ${MAX_PASSWORD_BYTES} bytes`)
      .optional()
      .meta({ description: 'The password chosen in the signup attempt whose mail carried the token. Send this or `new_password`.' }),
    new_password: newPasswordField()
      .optional()
      .meta({ description: 'A new password, set by the holder of the link (the signup rules apply). Send this or `password`.' }),
  })
  .refine((b) => (b.password === undefined) !== (b.new_password === undefined), { message: 'send exactly one of password and new_password', path: ['password'] });

const VERIFICATION_SENT = { status: 'verification_sent' } as const;
const LINK_INVALID = 'This link is invalid, was already used, or has expired.';
const WRONG_PASSWORD = 'The password does not match the one chosen for this signup. Nothing was changed; confirm with that password, or choose one with new_password.';

/** Browsers get pages: a form post, or a GET that does not prefer JSON. JSON for `Accept: application/json`. */
export function wantsHtml(ctx: Context): boolean {
  const form = ctx.method === 'POST' && Boolean(ctx.is('application/x-www-form-urlencoded'));
  const preferred = form || ctx.method === 'GET' || ctx.method === 'HEAD' ? ctx.accepts('html', 'json') : ctx.accepts('json', 'html');
  return preferred === 'html';
}

export function sendPage(ctx: Context, page: Page): void {
  ctx.status = page.status;
  ctx.set(PAGE_HEADERS);
  ctx.body = page.html;
}

/** Answers a page to browsers and `json` (with the page's status, or `status`) to everyone else. */
function answer(ctx: Context, page: Page, json: unknown, status = page.status): void {
  if (wantsHtml(ctx)) return sendPage(ctx, page);
  ctx.status = status;
  ctx.body = json;
}

/** A JSON or form body (the pages' forms post urlencoded); anything else is 415. */
function jsonOrFormBody(ctx: Context): unknown {
  if (ctx.is('application/x-www-form-urlencoded')) return ctx.request.body;
  return jsonBody(ctx);
}

/**
 * For the routes a browser reaches: errors become pages when the client asks for HTML (the error
 * JSON otherwise, from the app's error handler). Outside the deadline, so a 503 for a late
 * answer becomes a page too.
 */
function pagesForErrors(log: Logger) {
  return async (ctx: Context, next: () => Promise<unknown>) => {
    try {
      await next();
    } catch (err) {
      if (!wantsHtml(ctx)) throw err;
      const e = toApiError(err);
      if (e.status >= 500) log.error({ err: { name: (err as Error)?.name, message: (err as Error)?.message }, requestId: ctx.state.requestId }, 'request failed');
      if (e.status === 503 || e.status === 502 || e.status === 500) {
        const posted = typeof ctx.request.body === 'object' && ctx.request.body !== null ? (ctx.request.body as Record<string, unknown>).token : undefined;
        const token = posted ?? ctx.query.token;
        // "Try again" leads back to the link's page (never re-posting a password).
        sendPage(ctx, { ...pages.unavailable(typeof token === 'string' && TOKEN_FORMAT.test(token) ? `verify?token=${encodeURIComponent(token)}` : undefined), status: e.status });
        if (e.status === 503) ctx.set('Retry-After', '5');
        return;
      }
      const body = errorBody(e.status, e.message);
      sendPage(ctx, pages.error(e.status, body.title, e.message));
    }
  };
}

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
   * resumed: this attempt's password goes with the next link) and, unless
   * SIGNUP_REVEAL_EXISTING, for an active account. All three do the same work, one argon2 hash
   * first, so that the time of the answer does not tell them apart either.
   */
  async function createSignup(ctx: Context) {
    // 0. Reject oversized or invalid inputs before any I/O.
    const body = parse(signupRequest, jsonBody(ctx));
    const requestId: string = ctx.state.requestId;

    // 1. The tenant must exist and be active.
    const tenant = await findTenant(db, body.tenant);
    if (!tenant || tenant.status !== 'active') throw new ApiError(422, 'tenant_not_active');

    // 2. Hash first, whatever follows: the hash is most of the answer's time, and an address
    //    with an account must not answer sooner than one without.
    //    A hash that cannot be done before the answer is due is not started (503 instead).
    const passwordHash = await hashes.hash(body.password, { deadline: ctx.state.deadline - 500, signal: ctx.state.callerGone });

    // 3. An active account is never touched: it gets a notice, the caller the usual answer.
    const identifier = identifierOf(body.email);
    const active = await findActiveUserByIdentifier(db, tenant.id, identifier);
    if (active) {
      if (config.signup.revealExisting) throw new ApiError(409, 'already_exists');
      await notifyExistingAccount(temporal, queue, { userId: active.id, tenantId: tenant.id, resendIntervalMs: config.signup.resendIntervalMs }, temporalDeadline(ctx));
      ctx.status = 202;
      ctx.body = VERIFICATION_SENT;
      return;
    }

    // 4. A pending signup is resumed: this attempt becomes its latest, and the next link carries
    //    it. Nobody takes the account over by signing up second (or first): only a confirmation
    //    through a link, which proves the mailbox, activates it, with a password the person
    //    holding the link types (see confirm).
    let pending = await findPendingSignup(db, tenant.id, identifier);
    // Still pending past its expiry: its workflow was terminated before it could expire it. End
    // it here, as the workflow would have, and start afresh.
    if (pending && pending.expires_at.getTime() <= Date.now()) {
      await expireSignupRow(db, pending.id, { reason: 'timeout', requestId, pastExpiryOnly: true });
      pending = undefined;
    }
    if (!pending) {
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
    // The signup ended between the lookup and now (activated or expired): a defined answer
    // rather than a run started for a finished signup. The caller's retry takes the right path.
    if (!(await recordAttempt(db, pending.id, { passwordHash, displayName: body.display_name }))) {
      throw new ApiError(503, 'The signup changed meanwhile; try again.');
    }
    await resumeSignup(temporal, queue, startOf(pending, tenant, requestId), temporalDeadline(ctx));
    await recordAudit(db, { type: 'signup_resumed', userId: pending.user_id, tenantId: tenant.id, requestId });
    ctx.status = 202;
    ctx.body = VERIFICATION_SENT;
  }

  /** The tenant a link's invalid page offers a new link for: the token's, the link's, or the default. */
  function tenantFor(ctx: Context, found: FoundToken | undefined): string {
    const fromLink = ctx.query.tenant;
    if (found) return found.tenantIdentifier;
    if (typeof fromLink === 'string' && tenantField.safeParse(fromLink).success) return fromLink;
    return config.signup.defaultTenant;
  }

  const invalid = (ctx: Context, found: FoundToken | undefined) => answer(ctx, pages.invalid(tenantFor(ctx, found)), errorBody(410, LINK_INVALID));
  const activePage = (ctx: Context, userId: string) => answer(ctx, pages.active(), { status: 'active', user_id: userId });

  /**
   * GET (and HEAD) `/api/v0/signups/verify?token=…`: the link in the mail. Shows, changes nothing.
   *
   * - pending: 200, the confirm form (`&choose=new`: the new-password form);
   *   JSON `{"status":"confirmation_required"}`;
   * - confirmed, still activating: 202 `{"status":"activating","user_id"}`;
   * - active: 200 `{"status":"active","user_id"}`;
   * - unknown, replaced or expired: 410 with the error JSON; the page offers a new link.
   */
  async function showLink(ctx: Context) {
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    const found = TOKEN_FORMAT.test(token) ? await findToken(db, token) : undefined;
    if (!found || !found.valid) return invalid(ctx, found);
    if (found.signupState === 'active') return activePage(ctx, found.userId);
    if (found.used) return answer(ctx, pages.activating(token, true), { status: 'activating', user_id: found.userId });
    if (ctx.query.choose === 'new') return answer(ctx, pages.choosePassword(token), { status: 'confirmation_required' });
    answer(ctx, pages.confirm(token), { status: 'confirmation_required' });
  }

  /**
   * POST `/api/v0/signups/verify` `{"token","password"}` or `{"token","new_password"}` (JSON, or
   * the pages' urlencoded forms).
   *
   * - `password` must match the password chosen in the signup attempt whose mail carried the
   *   token; else 403 with the error JSON and nothing changed.
   * - `new_password` (the signup's rules) is set by the holder of the link.
   *
   * Then the account is activated with that password: 200 `{"status":"active","user_id"}`, or 202
   * `{"status":"activating","user_id"}` if the worker is slow (it finishes by itself). Repeating
   * a confirmation whose answer was lost is safe. Unknown, replaced and expired tokens: 410.
   */
  async function confirm(ctx: Context) {
    const raw = jsonOrFormBody(ctx);
    const parsed = confirmRequest.safeParse(raw);
    const rawToken = typeof (raw as { token?: unknown })?.token === 'string' ? (raw as { token: string }).token : '';
    if (!parsed.success) {
      // The new-password form's own problem (too short, too long) is shown on that form.
      const problem = parsed.error.issues.find((i) => i.path[0] === 'new_password');
      if (problem && wantsHtml(ctx) && TOKEN_FORMAT.test(rawToken)) return sendPage(ctx, pages.choosePassword(rawToken, `The new password ${problem.message}.`));
      parse(confirmRequest, raw); // throws the 400 with every problem listed
    }
    const body = parsed.data!;
    const found = TOKEN_FORMAT.test(body.token) ? await findToken(db, body.token) : undefined;
    if (!found || !found.valid) return invalid(ctx, found);
    // Already active: nothing to do, and nothing changes.
    if (found.signupState === 'active') return activePage(ctx, found.userId);

    // 1. The password the account will have: the attempt's, if it matches, or the new one.
    let chosenHash: string;
    if (body.password !== undefined) {
      const job = { deadline: ctx.state.deadline - 500, signal: ctx.state.callerGone };
      const matches = found.passwordHash ? await hashes.verify(found.passwordHash, body.password, job) : await hashes.dummyVerify(body.password, job);
      if (!matches) return answer(ctx, pages.wrongPassword(body.token), errorBody(403, WRONG_PASSWORD));
      chosenHash = found.passwordHash!;
    } else {
      chosenHash = await hashes.hash(body.new_password!, { deadline: ctx.state.deadline - 500, signal: ctx.state.callerGone });
    }

    // 2. Claim the token with that password, so a resend racing with this cannot void it.
    //    With a new password the link's holder may not be who started the attempt, so the
    //    attempt's display name (someone else's text, perhaps) does not go to the account.
    const claim = await claimToken(db, found.tokenId, chosenHash, body.new_password !== undefined);
    if (claim === 'not_pending') {
      const now = await findSignup(db, found.signupId);
      return now?.state === 'active' ? activePage(ctx, found.userId) : invalid(ctx, found);
    }

    // 3. Tell the workflow. A closed one either finished the signup (the row says how) or was
    //    terminated by an operator with the signup still pending: then a fresh run finishes it.
    try {
      const told = await signalEmailVerified(temporal, found.workflowId, found.tokenId, temporalDeadline(ctx));
      if (told === 'closed') {
        const row = await findSignup(db, found.signupId);
        if (row?.state === 'active') return activePage(ctx, found.userId);
        if (!row || row.state === 'expired') return invalid(ctx, found);
        await restartVerifiedSignup(temporal, queue, startOf(row, { id: found.tenantId, identifier: found.tenantIdentifier }, ctx.state.requestId), found.tokenId, temporalDeadline(ctx));
      }
    } catch (err) {
      if (claim === 'claimed') await unclaimToken(db, found.tokenId).catch(() => undefined);
      throw err;
    }

    // 4. Wait for the activation, but answer (202, activating) comfortably before the deadline.
    const outcome = await waitForOutcome(found.signupId, Math.min(8_000, ctx.state.deadline - Date.now() - 500), ctx.state.callerGone);
    if (outcome === 'expired') return invalid(ctx, found);
    if (outcome === 'active') return activePage(ctx, found.userId);
    answer(ctx, pages.activating(body.token), { status: 'activating', user_id: found.userId });
  }

  /**
   * Reads the signup's row until the workflow has activated (or expired) it, `timeoutMs` ends, or
   * the caller has gone. An activation usually lands 50–150 ms after the signal, so the row is
   * read every OUTCOME_POLL_MS (one primary-key lookup) for the first OUTCOME_FAST_POLL_FOR_MS,
   * then every 250 ms. A doubling interval (25, 50, 100, 200 ms) added up to 100 ms to a click
   * whose activation came a few milliseconds after a read: its steps, not the work, set the latency.
   */
  async function waitForOutcome(signupId: string, timeoutMs: number, callerGone?: AbortSignal): Promise<'active' | 'expired' | 'pending'> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    for (;;) {
      if (callerGone?.aborted) return 'pending';
      const s = await findSignup(db, signupId);
      if (s?.state === 'active') return 'active';
      if (!s || s.state === 'expired') return 'expired';
      const delay = Date.now() - started < OUTCOME_FAST_POLL_FOR_MS ? OUTCOME_POLL_MS : 250;
      if (Date.now() + delay > deadline) return 'pending';
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /**
   * POST `/api/v0/signups/resend` `{tenant, email}` (JSON, or the invalid-link page's form)
   *
   * Always 202 `{"status":"verification_sent"}`. If a signup is pending and its last email went
   * out over SIGNUP_RESEND_INTERVAL ago, the workflow sends a fresh link.
   */
  async function resend(ctx: Context) {
    const body = parse(resendRequest, jsonOrFormBody(ctx));
    const tenant = await findTenant(db, body.tenant);
    const pending = tenant?.status === 'active' ? await findPendingSignup(db, tenant.id, identifierOf(body.email)) : undefined;
    if (pending && pending.expires_at.getTime() <= Date.now()) {
      // Past its expiry with its workflow gone (terminated): end it, as the workflow would have.
      await expireSignupRow(db, pending.id, { reason: 'timeout', requestId: ctx.state.requestId, pastExpiryOnly: true });
    } else if (tenant && pending) {
      const last = pending.last_email_sent_at?.getTime() ?? 0;
      if (Date.now() - last >= config.signup.resendIntervalMs) {
        await resumeSignup(temporal, queue, startOf(pending, tenant, ctx.state.requestId), temporalDeadline(ctx));
      }
    }
    answer(ctx, pages.resendSent(), VERIFICATION_SENT, 202);
  }

  // Case-sensitive: the rate limits and this router's own middleware (pages, deadline) are keyed
  // by the path as written, and @koa/router would otherwise route /API/V0/SIGNUPS around them.
  const router = new Router({ prefix: '/api/v0/signups', sensitive: true });
  router.use(['/verify', '/resend'], pagesForErrors(log));
  router.use(answerWithin(SIGNUP_DEADLINE_MS, log));
  router.post('/', createSignup);
  router.get('/verify', showLink);
  router.post('/verify', confirm);
  router.post('/resend', resend);
  return router;
}
