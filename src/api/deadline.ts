/**
 * An overall deadline for a route: whatever the handler is waiting on (a slow hash under load,
 * PostgreSQL, Temporal), the caller gets an answer within `ms` of arrival. Past it, the caller
 * gets 503 with `Retry-After`; the handler keeps running to its own end in the background, so
 * what it started completes or rolls back as it would have (signups are resumable, so a retry
 * after a late success is harmless). Handlers read `ctx.state.deadline` to bound their calls.
 */
import type { Context, Next } from 'koa';
import type { Logger } from '../logger';
import { ApiError } from './errors';

export function answerWithin(ms: number, log: Logger) {
  return async function deadline(ctx: Context, next: Next): Promise<void> {
    ctx.state.deadline = Date.now() + ms;
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new ApiError(503, 'The service is busy; try again shortly.'));
      }, ms);
    });
    const work = next();
    try {
      await Promise.race([work, late]);
    } catch (err) {
      if (timedOut) {
        ctx.set('Retry-After', '1');
        // The handler is still running: log how it ends, and never let it reject unhandled.
        work.then(
          () => log.warn({ route: ctx._matchedRoute, deadlineMs: ms }, 'request finished after its deadline had been answered'),
          (e: unknown) => log.warn({ route: ctx._matchedRoute, deadlineMs: ms, err: { name: (e as Error)?.name, message: (e as Error)?.message } }, 'request failed after its deadline had been answered'),
        );
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  };
}

