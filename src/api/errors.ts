/**
 * The one error shape of every endpoint, headless-lms's ControllerError JSON:
 * `{"title","message","source":null,"data"}`. Every failure, expected or not, is turned into
 * it here, in one place.
 */
import type { Context, Next } from 'koa';
import { ActivityFailure, ApplicationFailure, TimeoutFailure, WorkflowUpdateFailedError } from '@temporalio/client';
import { isDbUnavailable } from '../db';
import type { Logger } from '../logger';
import { HashQueueBusy } from '../hashing';
import { isTemporalUnavailable } from '../temporal/client';
import { FailureType } from '../workflows/shared';

export interface ErrorBody {
  title: string;
  message: string;
  source: null;
  data: unknown;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  410: 'Gone',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** An error whose status and message are meant for the caller. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly data: unknown = null,
  ) {
    super(message);
  }
}

export function errorBody(status: number, message: string, data: unknown = null): ErrorBody {
  return { title: TITLES[status] ?? 'Error', message, source: null, data };
}

/** Maps an error to the answer the caller gets; unknown errors become a 500 without details. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;

  // Body reading errors (raw-body) carry an HTTP status of their own.
  const e = err as { status?: unknown; type?: unknown; expose?: unknown };
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
    if (e.status === 413) return new ApiError(413, 'The request body is too large.');
    if (e.status === 415) return new ApiError(415, 'Unsupported content encoding.');
    if (e.type === 'entity.parse.failed' || e.status === 400) return new ApiError(400, 'The request body is not valid JSON.');
    return new ApiError(e.status, 'The request could not be read.');
  }

  if (err instanceof WorkflowUpdateFailedError) {
    const cause = err.cause instanceof ActivityFailure ? err.cause.cause : err.cause;
    if (cause instanceof ApplicationFailure) {
      switch (cause.type) {
        case FailureType.TmcUserNotFound:
          return new ApiError(404, 'The user was not found in TMC.');
        case FailureType.TmcUnauthorized:
          return new ApiError(502, 'TMC refused this service\'s access token.');
        case FailureType.TmcUnavailable:
          return new ApiError(502, 'TMC is unavailable.');
        case FailureType.TmcTimeout:
          return new ApiError(504, 'TMC did not answer in time.');
        case FailureType.DatabaseUnavailable:
          return new ApiError(503, 'The database is unavailable.');
        case FailureType.AttemptAbandoned:
          return new ApiError(503, 'The operation did not finish in time; nothing was changed.');
      }
    }
    // The interactive step ran out of time somewhere other than TMC (the database, a busy worker).
    if (cause instanceof TimeoutFailure) return new ApiError(503, 'The operation did not finish in time; nothing was changed.');
    return new ApiError(500, 'The operation failed.');
  }
  if (err instanceof HashQueueBusy) return new ApiError(503, 'The service is busy checking passwords; try again shortly.');
  if (isDbUnavailable(err)) return new ApiError(503, 'The database is unavailable.');
  if (isTemporalUnavailable(err)) return new ApiError(503, 'The workflow service is unavailable.');
  return new ApiError(500, 'Internal server error.');
}

/** Seconds a client should wait before retrying a 503: the outages behind one are seconds long. */
export const RETRY_AFTER_SECONDS = 1;

/**
 * Koa middleware: the outermost layer, so nothing escapes without the error JSON. Every 503 (a
 * thrown error, a deadline, or a route answering 503 itself such as /readyz) leaves with
 * `Retry-After`, so TMC and browsers know it is worth retrying.
 */
export function errorHandler(log: Logger) {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new ApiError(404, `No route for ${ctx.method} ${ctx.path}.`);
      }
    } catch (err) {
      const apiError = toApiError(err);
      if (apiError.status >= 500) {
        // Log the error's class and message, never request bodies: they may hold passwords.
        log.error({ err: { name: (err as Error)?.name, message: (err as Error)?.message }, requestId: ctx.state.requestId }, 'request failed');
      }
      ctx.status = apiError.status;
      ctx.body = errorBody(apiError.status, apiError.message, apiError.data);
      if (err instanceof HashQueueBusy) ctx.set('Retry-After', String(err.retryAfterSeconds));
    }
    if (ctx.status === 503 && !ctx.response.get('Retry-After')) ctx.set('Retry-After', String(RETRY_AFTER_SECONDS));
  };
}
