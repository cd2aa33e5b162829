/** Request parsing with zod: bad input becomes a 400 with the error JSON, never a 500. */
import type { Context } from 'koa';
import type { z } from 'zod';
import { ApiError } from './errors';

/** Parses `value` with `schema`; the 400's data lists each problem by field, without the values. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, what = 'request body'): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => ({ field: issue.path.join('.'), problem: issue.message }));
  const first = problems[0];
  throw new ApiError(400, `Invalid ${what}: ${first ? `${first.field || '(root)'}: ${first.problem}` : 'malformed'}.`, { problems });
}

/** The parsed JSON body; a POST must send JSON. */
export function jsonBody(ctx: Context): unknown {
  if (!ctx.is('application/json')) {
    throw new ApiError(415, 'Send the request body as JSON with Content-Type: application/json.');
  }
  return ctx.request.body;
}
