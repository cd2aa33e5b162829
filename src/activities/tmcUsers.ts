/**
 * Activities of tmcUserWorkflow. Each is idempotent: retrying one after a crash or a timeout
 * converges on the same rows, and TMC treats a repeated notification as harmless.
 *
 * Each honours its cancellation: the TMC call is aborted, not left running, and the interactive
 * steps, which carry an attempt token, never commit once the workflow has given the attempt up
 * (db/users.ts, "Abandoned attempts").
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Knex } from 'knex';
import type { Db } from '../db';
import {
  abandonAttempt,
  getOrCreateUserFromTmc,
  isAttemptAbandoned,
  lockTmcUser,
  recordNotificationOutcome,
  upsertPasswordHash,
  type NotificationOutcome,
  type User,
} from '../db/users';
import type { Logger } from '../logger';
import { moocfiIdForNewUser, type MoocfiClient } from '../moocfi';
import { TmcError, type TmcClient, type TmcUser } from '../tmc';
import { ANSWER_MARGIN_MS, FailureType } from '../workflows/shared';
import { mapFailures } from './failures';
import { notificationsDelivered, usersCreated } from '../metrics';

export interface TmcUserActivityDeps {
  db: Db;
  tmc: TmcClient;
  log: Logger;
  /** mooc.fi's id lookup for new users; without it (or when it is off) new users get a fresh UUID. */
  moocfi?: MoocfiClient;
}

/** The least time a TMC fetch is given; with less left, the step gives up without calling TMC. */
const MIN_TMC_BUDGET_MS = 1_000;

/** The running activity's cancellation signal; outside an activity (tests, the bench), none. */
function cancellation(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

/** An interactive step's fence: which attempt this is, and for which TMC user. */
interface Attempt {
  upstreamId: number;
  /** Unique per interactive step of a run (see workflows/tmcUser.ts). */
  attempt: string;
}

const abandoned = (why: string) => ApplicationFailure.create({ type: FailureType.AttemptAbandoned, message: `attempt abandoned: ${why}`, nonRetryable: true });

export function createTmcUserActivities({ db, tmc, log, moocfi }: TmcUserActivityDeps) {
  /**
   * Runs `write` in one transaction that commits only if the attempt is still wanted: not
   * cancelled (checked last, just before the commit) and not fenced by the workflow.
   */
  const guarded = async <T>(fence: Attempt | undefined, write: (trx: Knex.Transaction) => Promise<T>): Promise<T> => {
    const signal = cancellation();
    return db.transaction(async (trx) => {
      if (fence) {
        await lockTmcUser(trx, fence.upstreamId);
        if (await isAttemptAbandoned(trx, fence.attempt)) throw abandoned('the workflow gave it up');
      }
      const result = await write(trx);
      if (signal?.aborted) throw abandoned('cancelled or timed out before commit');
      return result;
    });
  };

  /** One transaction: get or create the user, then upsert the hash. */
  const createUser = async (tmcUser: TmcUser, passwordHash: string, fence?: Attempt, preferredId?: string): Promise<User> => {
    const { user, created } = await guarded(fence, async (trx) => {
      const result = await getOrCreateUserFromTmc(trx, tmcUser, preferredId);
      await upsertPasswordHash(trx, result.user.id, passwordHash);
      return result;
    });
    if (created) usersCreated.inc();
    return user;
  };

  const tellTmc = async (upstreamId: number, userId: string): Promise<void> => {
    try {
      await tmc.setPasswordManagedHere(upstreamId, userId, { signal: cancellation() });
    } catch (err) {
      if (err instanceof TmcError && err.kind === 'not_found') log.warn({ upstreamId, userId }, 'TMC has no such user; notification abandoned');
      throw err;
    }
    notificationsDelivered.inc();
    log.info({ upstreamId, userId }, 'TMC notified: password managed here');
  };

  return {
    /**
     * The interactive step of a create (a local activity): fetch the user from TMC, then in one
     * transaction get or create our user and upsert the hash. The TMC user's details (its email)
     * stay in this process; only our `User` goes back into the workflow's history.
     *
     * With `answerBy` (ms since the epoch) the fetch gives up ANSWER_MARGIN_MS before it, as a
     * non-retryable TmcTimeout, so the caller hears that TMC was slow while it still listens.
     */
    createUserFromTmc: mapFailures(
      async (input: { upstreamId: number; passwordHash: string; attempt?: string; answerBy?: number }): Promise<User> => {
        const budget = input.answerBy === undefined ? undefined : input.answerBy - Date.now() - ANSWER_MARGIN_MS;
        // Too little time left to give TMC a fair chance (an earlier attempt used it up, e.g. on a
        // database outage): say so, rather than blame TMC for a timeout it never had time for.
        if (budget !== undefined && budget < MIN_TMC_BUDGET_MS) throw abandoned('no time left before the caller\'s deadline');
        let tmcUser: TmcUser;
        try {
          tmcUser = await tmc.getUser(input.upstreamId, { timeoutMs: budget === undefined ? undefined : Math.max(budget, 0), signal: cancellation() });
        } catch (err) {
          if (err instanceof TmcError && err.kind === 'timeout' && budget !== undefined) {
            throw ApplicationFailure.create({ type: FailureType.TmcTimeout, message: err.message, nonRetryable: true });
          }
          throw err;
        }
        const fence = input.attempt === undefined ? undefined : { upstreamId: input.upstreamId, attempt: input.attempt };
        // A new user gets mooc.fi's id for them, if mooc.fi answers in the time that is left.
        const left = input.answerBy === undefined ? undefined : Math.max(0, input.answerBy - Date.now() - ANSWER_MARGIN_MS);
        const preferredId = await moocfiIdForNewUser(db, moocfi, tmcUser, { timeoutMs: left, signal: cancellation() });
        return createUser(tmcUser, input.passwordHash, fence, preferredId);
      },
    ),

    setPasswordHash: mapFailures(async (input: { userId: string; passwordHash: string; upstreamId?: number; attempt?: string }): Promise<void> => {
      const fence = input.attempt === undefined || input.upstreamId === undefined ? undefined : { upstreamId: input.upstreamId, attempt: input.attempt };
      await guarded(fence, (trx) => upsertPasswordHash(trx, input.userId, input.passwordHash));
    }),

    /**
     * After an interactive step failed: fences its attempt (it can no longer commit, wherever it
     * still runs) and returns the user with a password that it, or an earlier attempt, did
     * commit, so the workflow notifies TMC about it.
     */
    settleAbandonedAttempt: mapFailures(async (input: { upstreamId: number; attempt: string }): Promise<User | undefined> => {
      const user = await abandonAttempt(db, input.upstreamId, input.attempt);
      if (user) log.warn({ upstreamId: input.upstreamId, userId: user.id }, 'an interactive step failed, but a password is stored: TMC will be notified');
      return user;
    }),

    /** Tells TMC the password is managed here. A 404 is final (non-retryable); the rest is retried. */
    tellTmcPasswordManagedHere: mapFailures(async (input: { upstreamId: number; userId: string }): Promise<void> => {
      await tellTmc(input.upstreamId, input.userId);
    }),

    /** Records what became of the notification. Separate from the call, so retrying it never calls TMC. */
    recordTmcNotification: mapFailures(async (input: { upstreamId: number; userId: string; outcome: NotificationOutcome }): Promise<void> => {
      await recordNotificationOutcome(db, input.userId, input.upstreamId, input.outcome);
    }),

    // ---- runs started before LOCAL_INTERACTIVE_PATCH (see workflows/tmcUser.ts) still call these ----

    /** @deprecated pre-patch runs only. */
    fetchTmcUser: mapFailures(async (upstreamId: number): Promise<TmcUser> => tmc.getUser(upstreamId, { signal: cancellation() })),

    /** @deprecated pre-patch runs only. */
    createUserWithPassword: mapFailures(async (input: { tmcUser: TmcUser; passwordHash: string }): Promise<User> => createUser(input.tmcUser, input.passwordHash)),

    /** @deprecated pre-patch runs only: calls TMC and records the outcome in one go. */
    notifyPasswordManagedHere: mapFailures(async (input: { upstreamId: number; userId: string }): Promise<void> => {
      try {
        await tellTmc(input.upstreamId, input.userId);
      } catch (err) {
        // mapFailures makes the 404 a non-retryable TmcUserNotFound.
        if (err instanceof TmcError && err.kind === 'not_found') await recordNotificationOutcome(db, input.userId, input.upstreamId, 'tmc_user_not_found');
        throw err;
      }
      await recordNotificationOutcome(db, input.userId, input.upstreamId, 'delivered');
    }),
  };
}
