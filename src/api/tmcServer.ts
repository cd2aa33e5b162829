/*!
 * Handlers for `/api/v0/tmc-server/…`, the calls the TMC server makes (tmc-contract.md §1).
 * Every endpoint requires the shared secret in the raw `Authorization` header.
 *
 * - `POST /users/create`: sets a TMC user's password, creating the user from TMC's data first;
 *   runs as the durable tmcUserWorkflow, which then notifies TMC.
 * - `POST /users/authenticate`: checks a user_id/password pair.
 * - `POST /users/change-password`: replaces the password, checking the old one if given.
 * - `GET /users-by-upstream-id/:id`: the user for a TMC id, created from TMC's data if missing.
 * - `GET /users-by-upstream-id/:id/status`: read-only status for TMC's admin UI.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Client } from '@temporalio/client';
import type { Config } from '../config';
import type { Db } from '../db';
import { findLoginHash, getOrCreateUserFromTmc, replacePasswordHashIf, upsertPasswordHash, upstreamStatus, userExists } from '../db/users';
import type { Logger } from '../logger';
import type { HashJobOptions, HashQueue } from '../hashing';
import { verifyPasswordCompat } from '../passwords';
import { createTmcUser, INTERACTIVE_DEADLINE_MS } from '../temporal/starters';
import { MoocfiClient, moocfiIdForNewUser } from '../moocfi';
import { TmcError, type TmcClient } from '../tmc';
import { ANSWER_MARGIN_MS } from '../workflows/shared';
import { passwordRehashes, usersCreated } from '../metrics';
import { ApiError } from './errors';
import { authenticateFailures } from './rateLimit';
import { requireTmcSecret } from './tmcAuth';
import { jsonBody, parse } from './validation';

export interface TmcServerDeps {
  config: Config;
  db: Db;
  temporal: Client;
  tmc: TmcClient;
  log: Logger;
  /** Where argon2 work runs (src/hashing.ts). */
  hashes: HashQueue;
}

/**
 * Time a create keeps after hashing for the workflow (the commit; for a new user also TMC's user
 * fetch). A hash that cannot be done before `deadline - CREATE_WORKFLOW_RESERVE_MS` is not
 * started: 503 instead.
 */
const CREATE_WORKFLOW_RESERVE_MS = 1_000;

/** When the caller's answer is due: TMC gives up after 10 s, so 8 s after arrival. */
const deadlineOf = (ctx: Context): number => (ctx.state.arrivedAt ?? Date.now()) + INTERACTIVE_DEADLINE_MS;

/**
 * headless-lms puts no length cap on TMC's passwords, so neither does this service: a user who set
 * a long one through TMC must still log in. The request body limit (MAX_BODY_BYTES) bounds them.
 */
const password = z.string().meta({ description: 'Any length, as in headless-lms; bounded only by the request body limit (MAX_BODY_BYTES).' });

const int32 = z.number().int().min(-(2 ** 31)).max(2 ** 31 - 1);

export const createUserRequest = z.object({ upstream_id: int32, password });
export const loginRequest = z.object({ user_id: z.string().uuid(), password });
export const changePasswordRequest = z.object({
  user_id: z.string().uuid(),
  old_password: password.nullish(),
  new_password: password,
});
export const upstreamIdParam = z
  .string()
  .regex(/^-?\d{1,10}$/, 'must be an integer')
  .transform(Number)
  .pipe(int32);

export function tmcServerRoutes({ config, db, temporal, tmc, log, hashes }: TmcServerDeps): Router {
  const moocfi = new MoocfiClient(config.moocfi, (reason) => log.warn({ reason }, 'mooc.fi id lookup failed; a new id is used'));
  // Failed authenticates per user (README, "Rate limits"); off with the other limits.
  const failures = config.rateLimit.disabled ? undefined : authenticateFailures({ db, log });

  /**
   * True if the user has a live hash and the password matches it as headless-lms would accept
   * (verifyPasswordCompat: NFC, then the raw bytes until PASSWORD_RAW_FALLBACK_UNTIL). Unknown
   * users cost a dummy verification. With `upgrade`, a match on a hash of the raw bytes or with
   * older parameters is re-stored as the current hash of the NFC form (compare-and-swap, so a
   * concurrent password change wins); a failed re-store is logged and does not change the answer.
   */
  async function verifyLogin(userId: string, plain: string, { upgrade, job }: { upgrade: boolean; job: HashJobOptions }): Promise<boolean> {
    const hash = await findLoginHash(db, userId);
    if (hash === undefined) return hashes.dummyVerify(plain, job);
    // Both of the compatible verification's tries (NFC, then the raw bytes) in one queue slot.
    const result = await hashes.run(() => verifyPasswordCompat(hash, plain, { rawFallbackUntil: config.passwords.rawFallbackUntil }), job);
    if (!result.ok) return false;
    if (upgrade && result.rehash) {
      try {
        if (await replacePasswordHashIf(db, userId, hash, await hashes.hash(plain, job))) passwordRehashes.inc({ reason: result.rehash });
      } catch (err) {
        log.warn({ err: (err as Error).message, userId, reason: result.rehash }, 'could not re-store a verified password hash');
      }
    }
    return true;
  }

  /**
   * POST `/api/v0/tmc-server/users/create`
   *
   * Returns `{user, password_set: true}` once the user and the hash are committed. The hash is
   * made here, so the plaintext never reaches Temporal; TMC is told afterwards, durably.
   */
  async function createUser(ctx: Context) {
    // TMC gives up after 10 s; whatever happens, it gets an answer within 8 s of arrival.
    const deadline = deadlineOf(ctx);
    const body = parse(createUserRequest, jsonBody(ctx));
    const passwordHash = await hashes.hash(body.password, { deadline: deadline - CREATE_WORKFLOW_RESERVE_MS, signal: ctx.state.callerGone });
    ctx.body = await createTmcUser(
      temporal,
      config.temporal.taskQueue,
      { upstreamId: body.upstream_id, passwordHash, notifyRetry: config.tmc.notifyRetry, maxUpdatesPerRun: config.tmc.updatesPerRun, requestId: ctx.state.requestId },
      deadline,
    );
  }

  /**
   * POST `/api/v0/tmc-server/users/authenticate`
   *
   * Returns bare `true` if the user has a password and it matches, else `false`. Unknown users
   * cost a dummy verification, so timing does not reveal who exists. Hashes headless-lms made
   * before it normalized, or with older parameters, are upgraded on a match (verifyLogin). After
   * 10 failed attempts for one user id in 5 minutes the answer is 429 until the window passes;
   * successes are not counted (and clear the count), and nothing is counted before the secret
   * and the body pass.
   */
  async function authenticate(ctx: Context) {
    const body = parse(loginRequest, jsonBody(ctx));
    const job = { deadline: deadlineOf(ctx), signal: ctx.state.callerGone };
    const verify = () => verifyLogin(body.user_id, body.password, { upgrade: true, job });
    const ok = failures ? await failures.guard(ctx, body.user_id, verify) : await verify();
    if (ok !== undefined) ctx.body = ok;
  }

  /**
   * POST `/api/v0/tmc-server/users/change-password`
   *
   * With a string `old_password`, it must verify first. With null or no `old_password` this is
   * TMC's reset path and the new password is set unchecked. Returns bare `true` or `false`;
   * TMC is not notified.
   */
  async function changePassword(ctx: Context) {
    const body = parse(changePasswordRequest, jsonBody(ctx));
    const job = { deadline: deadlineOf(ctx) - 500, signal: ctx.state.callerGone };
    if (typeof body.old_password === 'string') {
      // No upgrade: the hash is replaced just below anyway.
      if (!(await verifyLogin(body.user_id, body.old_password, { upgrade: false, job }))) {
        ctx.body = false;
        return;
      }
    } else if (!(await userExists(db, body.user_id))) {
      ctx.body = false;
      return;
    }
    const newHash = await hashes.hash(body.new_password, job);
    try {
      await upsertPasswordHash(db, body.user_id, newHash);
      ctx.body = true;
    } catch (err) {
      // The user was deleted between the check and the write.
      if ((err as { code?: string }).code === '23503') ctx.body = false;
      else throw err;
    }
  }

  /**
   * GET `/api/v0/tmc-server/users-by-upstream-id/:id`
   *
   * Returns the `User` for a TMC id, creating it from TMC's data, without a password, if missing.
   */
  async function userByUpstreamId(ctx: Context) {
    const deadline = deadlineOf(ctx);
    const upstreamId = parse(upstreamIdParam, ctx.params.id, 'upstream id');
    let tmcUser;
    try {
      // Give up on TMC in time to answer within the deadline, with a 504 that names TMC.
      tmcUser = await tmc.getUser(upstreamId, { timeoutMs: deadline - Date.now() - ANSWER_MARGIN_MS });
    } catch (err) {
      throw tmcFailure(err);
    }
    // A new user gets mooc.fi's id for them, if mooc.fi answers in the time that is left.
    const preferredId = await moocfiIdForNewUser(db, moocfi, tmcUser, { timeoutMs: deadline - Date.now() - ANSWER_MARGIN_MS, signal: ctx.state.callerGone });
    // A transaction, so the user and its details are written together or not at all.
    const { user, created } = await db.transaction((trx) => getOrCreateUserFromTmc(trx, tmcUser, preferredId));
    if (created) usersCreated.inc();
    ctx.body = user;
  }

  /**
   * GET `/api/v0/tmc-server/users-by-upstream-id/:id/status`
   *
   * Read-only: never calls TMC and never creates. Called by TMC's admin UI on page views.
   */
  async function upstreamIdStatus(ctx: Context) {
    const upstreamId = parse(upstreamIdParam, ctx.params.id, 'upstream id');
    ctx.body = await upstreamStatus(db, upstreamId);
  }

  const router = new Router({ prefix: '/api/v0/tmc-server' });
  router.use(requireTmcSecret(config.tmc.sharedSecret));
  router.post('/users/create', createUser);
  router.post('/users/authenticate', authenticate);
  router.post('/users/change-password', changePassword);
  router.get('/users-by-upstream-id/:id', userByUpstreamId);
  router.get('/users-by-upstream-id/:id/status', upstreamIdStatus);
  return router;
}

function tmcFailure(err: unknown): unknown {
  if (!(err instanceof TmcError)) return err;
  if (err.kind === 'not_found') return new ApiError(404, 'The user was not found in TMC.');
  if (err.kind === 'unauthorized') return new ApiError(502, "TMC refused this service's access token.");
  if (err.kind === 'timeout') return new ApiError(504, 'TMC did not answer in time.');
  return new ApiError(502, 'TMC is unavailable.');
}
