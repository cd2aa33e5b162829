/**
 * Rate limits on the endpoints worth guessing at: signup, resend, verify and authenticate, per
 * client IP and per identifier (tenant + email, or user id). Counters live in PostgreSQL
 * (rate-limiter-flexible), so every API replica shares them. Over the limit the answer is 429
 * with Retry-After and headless-lms's body `{"error":"too_many_requests","retry_after_seconds":N}`.
 *
 * Calls carrying the TMC shared secret skip the per-IP limits when RATE_LIMIT_EXEMPT_TMC is on:
 * TMC calls from one address on behalf of every user. Per-user limits still apply to them.
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
  authenticate: { ip: { points: 120, durationSeconds: 60 }, id: { points: 10, durationSeconds: 300 } },
} satisfies Record<string, { ip: Limit; id: Limit | undefined }>;

type Endpoint = keyof typeof LIMITS;

/**
 * By path, whatever the method: every method that reaches a handler (GET, HEAD and POST of the
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
  if (endpoint === 'authenticate' && typeof b.user_id === 'string') return b.user_id.toLowerCase().slice(0, 64);
  return undefined;
}

/** Keys are hashed: identifiers (emails) stay out of the rate-limit table. */
const keyOf = (value: string) => createHash('sha256').update(value).digest('base64url');

export function rateLimits(options: { db: Db; log: Logger; tmcSecret: string; exemptTmc: boolean }) {
  const make = (name: string, limit: Limit) =>
    new RateLimiterPostgres({
      storeClient: options.db,
      storeType: 'knex',
      tableName: 'rate_limits',
      tableCreated: true,
      keyPrefix: name,
      points: limit.points,
      duration: limit.durationSeconds,
      clearExpiredByTimeout: false,
    });
  const limiters = Object.fromEntries(
    Object.entries(LIMITS).map(([endpoint, l]) => [endpoint, { ip: make(`${endpoint}:ip`, l.ip), id: l.id && make(`${endpoint}:id`, l.id) }]),
  ) as Record<Endpoint, { ip: RateLimiterPostgres; id: RateLimiterPostgres | undefined }>;

  const secretDigest = createHash('sha256').update(options.tmcSecret, 'latin1').digest();
  const isTmc = (ctx: Context) => {
    const header = ctx.req.headers.authorization;
    return header !== undefined && timingSafeEqual(createHash('sha256').update(header, 'latin1').digest(), secretDigest);
  };

  return async (ctx: Context, next: Next) => {
    const endpoint = ROUTES[ctx.path.replace(/\/+$/, '') || '/'];
    if (!endpoint) return next();
    const { ip, id } = limiters[endpoint];
    const identifier = identifierFor(endpoint, ctx.request.body);
    try {
      if (!(options.exemptTmc && isTmc(ctx))) await ip.consume(keyOf(ctx.ip));
      if (id && identifier) await id.consume(keyOf(identifier));
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        const retry = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
        ctx.set('Retry-After', String(retry));
        // A person following a link or submitting one of its forms gets a page.
        if ((endpoint === 'verify' || endpoint === 'resend') && wantsHtml(ctx)) return sendPage(ctx, pages.rateLimited(retry));
        ctx.status = 429;
        ctx.body = { error: 'too_many_requests', retry_after_seconds: retry };
        return;
      }
      // The store is unreachable (PostgreSQL down): let the request through; it will get its
      // own 503 from the handler if it needs the database.
      options.log.warn({ err: { message: (err as Error).message } }, 'rate limiter unavailable; request allowed');
    }
    await next();
  };
}
