/**
 * Activities of tmcUserWorkflow. Each is idempotent: retrying one after a crash or a timeout
 * converges on the same rows, and TMC treats a repeated notification as harmless.
 */
import type { Db } from '../db';
import { getOrCreateUserFromTmc, recordNotificationOutcome, upsertPasswordHash, type NotificationOutcome, type User } from '../db/users';
import type { Logger } from '../logger';
import { TmcError, type TmcClient, type TmcUser } from '../tmc';
import { mapFailures } from './failures';
import { notificationsDelivered, usersCreated } from '../metrics';

export interface TmcUserActivityDeps {
  db: Db;
  tmc: TmcClient;
  log: Logger;
}

export function createTmcUserActivities({ db, tmc, log }: TmcUserActivityDeps) {
  /** One transaction: get or create the user, then upsert the hash. */
  const createUser = async (tmcUser: TmcUser, passwordHash: string): Promise<User> => {
    const { user, created } = await db.transaction(async (trx) => {
      const result = await getOrCreateUserFromTmc(trx, tmcUser);
      await upsertPasswordHash(trx, result.user.id, passwordHash);
      return result;
    });
    if (created) usersCreated.inc();
    return user;
  };

  const tellTmc = async (upstreamId: number, userId: string): Promise<void> => {
    try {
      await tmc.setPasswordManagedHere(upstreamId, userId);
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
     */
    createUserFromTmc: mapFailures(async (input: { upstreamId: number; passwordHash: string }): Promise<User> => {
      const tmcUser = await tmc.getUser(input.upstreamId);
      return createUser(tmcUser, input.passwordHash);
    }),

    setPasswordHash: mapFailures(async (input: { userId: string; passwordHash: string }): Promise<void> => {
      await upsertPasswordHash(db, input.userId, input.passwordHash);
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
    fetchTmcUser: mapFailures(async (upstreamId: number): Promise<TmcUser> => tmc.getUser(upstreamId)),

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
