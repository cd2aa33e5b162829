/**
 * Authorization of the TMC server's calls: the raw `Authorization` header must equal the shared
 * secret (no `Bearer` prefix), compared in constant time. Failures are 401 with headless-lms's
 * exact bodies.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'koa';
import { errorBody } from './errors';

const PREFIX = 'TMC server authorization failed: ';

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'latin1').digest();
}

/** A header value HTTP allows as text: visible ASCII, spaces and tabs. */
const VALID_HEADER = /^[\t\x20-\x7e]*$/;

export function requireTmcSecret(secret: string) {
  // Comparing fixed-length digests keeps the comparison constant-time whatever the lengths.
  const expected = sha256(secret);
  return async (ctx: Context, next: Next) => {
    const header = ctx.req.headers.authorization;
    let reason: string | undefined;
    if (header === undefined) reason = 'Missing Authorization header.';
    else if (!VALID_HEADER.test(header)) reason = 'Invalid Authorization header format.';
    else if (!timingSafeEqual(sha256(header), expected)) reason = 'Invalid authorization token.';
    if (reason) {
      ctx.status = 401;
      ctx.body = errorBody(401, PREFIX + reason);
      return;
    }
    await next();
  };
}
