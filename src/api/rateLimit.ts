/**
 * Rate limits on the endpoints worth guessing at: signup, resend, verify and authenticate, per
 * client IP and per identifier (tenant + email). Counters live in PostgreSQL
 * (rate-limiter-flexible), so every API replica shares them. Over the limit the answer is 429
 * with Retry-After and headless-lms's body `{"error":"too_many_requests","retry_after_seconds":N}`.
 *
 * Calls carrying the TMC shared secret skip the per-IP limits when RATE_LIMIT_EXEMPT_TMC is on:
 * TMC calls from one address on behalf of every user.
 *
 * Authenticate's per-user limit is different (`authenticateFailures`): it counts **failed**
 * verifications only, and is applied by the handler after the shared secret and the body have
 * been checked. TMC calls authenticate on every login and on every HTTP-basic-auth API request
 * and reads anything but a bare `true` as a wrong password, so a limit that counted successes
 * would lock busy users out, and one counted before the secret check would let anyone on the
 * network lock any user out.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'koa';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import type { Db } from '../db';
import { identifierOf } from '../db/signups';
import type { Logger } from '../logger';
import { pages } from './pages';
import { sendPage, wantsHtml } from './signups';

interface Limit {
  points: number;
  durationSeconds: number;
}

/** points per window, per IP and per identifier. */
export const LIMITS = {
  signup: { ip: { points: 20, durationSeconds: 600 }, id: { points: 5, durationSeconds: 600 } },
  resend: { ip: { points: 20, durationSeconds: 600 }, id: { points: 5, durationSeconds: 600 } },
  verify: { ip: { points: 30, durationSeconds: 600 }, id: undefined },
  authenticate: { ip: { points: 120, durationSeconds: 60 }, id: undefined },
} satisfies Record<string, { ip: Limit; id: Limit | undefined }>;

/** Failed authenticates per user id before the user is refused with 429; a success resets it. */
export const AUTHENTICATE_FAILURES: Limit = { points: 10, durationSeconds: 300 };

type Endpoint = keyof typeof LIMITS;

/**
 * By path (in any letter case), whatever the method: every method that reaches a handler (GET, HEAD and POST of the
 * link; a HEAD is served by the GET handler) counts against the same limit.
 */
const ROUTES: Record<string, Endpoint> = {
  '/api/v0/signups': 'signup',
  '/api/v0/signups/resend': 'resend',
  '/api/v0/signups/verify': 'verify',
  '/api/v0/tmc-server/users/authenticate': 'authenticate',
};

/** The identifier a request is about, if its body names one. Bad bodies are the validator's job. */
function identifierFor(endpoint: Endpoint, body: unknown): string | undefined {
  const b = (body ?? {}) as Record<string, unknown>;
  if ((endpoint === 'signup' || endpoint === 'resend') && typeof b.tenant === 'string' && typeof b.email === 'string') {
    return `${b.tenant}:${identifierOf(b.email)}`.slice(0, 300);
  }
  return undefined;
}

/** Keys are hashed: identifiers (emails) stay out of the rate-limit table. */
const keyOf = (value: string) => createHash('sha256').update(value).digest('base64url');

const limiter = (db: Db, name: string, limit: Limit) =>
  new RateLimiterPostgres({
    storeClient: db,
    storeType: 'knex',
    tableName: 'rate_limits',
    tableCreated: true,
    keyPrefix: name,
    points: limit.points,
    duration: limit.durationSeconds,
    clearExpiredByTimeout: false,
  });

/** Answers 429 with Retry-After and headless-lms's body. */
function tooManyRequests(ctx: Context, msBeforeNext: number): void {
  const retry = Math.max(1, Math.ceil(msBeforeNext / 1000));
  ctx.status = 429;
  ctx.set('Retry-After', String(retry));
  ctx.body = { error: 'too_many_requests', retry_after_seconds: retry };
}

export interface AuthenticateFailures {
  /**
   * Runs `verify` for `userId` unless the user has used up AUTHENTICATE_FAILURES, in which case
   * the answer is 429 and `verify` is not run. A `false` from `verify` counts one failure; a
   * `true` clears the count. Returns the verification's result, or undefined when `ctx` was
   * answered 429. If the store is unreachable the verification runs uncounted.
   */
  guard(ctx: Context, userId: string, verify: () => Promise<boolean>): Promise<boolean | undefined>;
}

/** The per-user limit on failed authenticates (see the module comment). */
export function authenticateFailures(options: { db: Db; log: Logger }): AuthenticateFailures {
  const failures = limiter(options.db, 'authenticate:failures', AUTHENTICATE_FAILURES);
  const storeDown = (err: unknown) =>
    options.log.warn({ err: { message: (err as Error).message } }, 'rate limiter unavailable; authenticate not counted');
  return {
    async guard(ctx, userId, verify) {
      const key = keyOf(`authenticate:${userId.toLowerCase()}`);
      let used = 0;
      try {
        const state = await failures.get(key);
        used = state?.consumedPoints ?? 0;
        if (state && used >= AUTHENTICATE_FAILURES.points) {
          tooManyRequests(ctx, state.msBeforeNext);
          return undefined;
        }
      } catch (err) {
        storeDown(err);
      }
      const ok = await verify();
      try {
        if (!ok) await failures.penalty(key, 1);
        else if (used > 0) await failures.delete(key);
      } catch (err) {
        storeDown(err);
      }
      return ok;
    },
  };
}

export function rateLimits(options: { db: Db; log: Logger; tmcSecret: string; exemptTmc: boolean }) {
  const make = (name: string, limit: Limit) => limiter(options.db, name, limit);
  const limiters = Object.fromEntries(
    Object.entries(LIMITS).map(([endpoint, l]) => [endpoint, { ip: make(`${endpoint}:ip`, l.ip), id: l.id && make(`${endpoint}:id`, l.id) }]),
  ) as Record<Endpoint, { ip: RateLimiterPostgres; id: RateLimiterPostgres | undefined }>;

  const secretDigest = createHash('sha256').update(options.tmcSecret, 'latin1').digest();
  const isTmc = (ctx: Context) => {
    const header = ctx.req.headers.authorization;
    return header !== undefined && timingSafeEqual(createHash('sha256').update(header, 'latin1').digest(), secretDigest);
  };

  return async (ctx: Context, next: Next) => {
    // Lower-cased: routers match paths case-insensitively unless told otherwise.
    const endpoint = ROUTES[ctx.path.toLowerCase().replace(/\/+$/, '') || '/'];
    if (!endpoint) return next();
    const { ip, id } = limiters[endpoint];
    const identifier = identifierFor(endpoint, ctx.request.body);
    try {
      if (!(options.exemptTmc && isTmc(ctx))) await ip.consume(keyOf(ctx.ip));
      if (id && identifier) await id.consume(keyOf(identifier));
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        // A person following a link or submitting one of its forms gets a page.
        if ((endpoint === 'verify' || endpoint === 'resend') && wantsHtml(ctx)) {
          const retry = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
          ctx.set('Retry-After', String(retry));
          return sendPage(ctx, pages.rateLimited(retry));
        }
        tooManyRequests(ctx, err.msBeforeNext);
        return;
      }
      // The store is unreachable (PostgreSQL down): let the request through; it will get its
      // own 503 from the handler if it needs the database.
      options.log.warn({ err: { message: (err as Error).message } }, 'rate limiter unavailable; request allowed');
    }
    await next();
  };
}
