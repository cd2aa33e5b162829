/** Turns errors from our dependencies into Temporal failures with types the callers understand. */
import { ApplicationFailure } from '@temporalio/activity';
import { isDbUnavailable } from '../db';
import { TmcError } from '../tmc';
import { FailureType } from '../workflows/shared';

export function asActivityFailure(err: unknown): unknown {
  if (err instanceof TmcError) {
    switch (err.kind) {
      case 'not_found':
        return ApplicationFailure.create({ type: FailureType.TmcUserNotFound, message: err.message, nonRetryable: true });
      case 'unauthorized':
        return ApplicationFailure.create({ type: FailureType.TmcUnauthorized, message: err.message });
      case 'timeout':
        return ApplicationFailure.create({ type: FailureType.TmcTimeout, message: err.message });
      default:
        return ApplicationFailure.create({ type: FailureType.TmcUnavailable, message: err.message });
    }
  }
  if (isDbUnavailable(err)) {
    return ApplicationFailure.create({ type: FailureType.DatabaseUnavailable, message: 'PostgreSQL is unavailable' });
  }
  return err;
}

/** Wraps an activity so that every error it throws goes through asActivityFailure. */
export function mapFailures<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } catch (err) {
      throw asActivityFailure(err);
    }
  };
}
