/**
 * Activities of tmcUserWorkflow. Each is idempotent: retrying one after a crash or a timeout
 * converges on the same rows, and TMC treats a repeated notification as harmless.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { Db } from '../db';
import { getOrCreateUserFromTmc, recordNotificationOutcome, upsertPasswordHash, type User } from '../db/users';
import type { Logger } from '../logger';
import { TmcError, type TmcClient, type TmcUser } from '../tmc';
import { FailureType } from '../workflows/shared';
import { mapFailures } from './failures';
import { notificationsDelivered, usersCreated } from '../metrics';

export interface TmcUserActivityDeps {
  db: Db;
  tmc: TmcClient;
  log: Logger;
}

export function createTmcUserActivities({ db, tmc, log }: TmcUserActivityDeps) {
  return {
    fetchTmcUser: mapFailures(async (upstreamId: number): Promise<TmcUser> => tmc.getUser(upstreamId)),

    /** One transaction: get or create the user, then upsert the hash. */
    createUserWithPassword: mapFailures(async (input: { tmcUser: TmcUser; passwordHash: string }): Promise<User> => {
      const { user, created } = await db.transaction(async (trx) => {
        const result = await getOrCreateUserFromTmc(trx, input.tmcUser);
        await upsertPasswordHash(trx, result.user.id, input.passwordHash);
        return result;
      });
      if (created) usersCreated.inc();
      return user;
    }),

    setPasswordHash: mapFailures(async (input: { userId: string; passwordHash: string }): Promise<void> => {
      await upsertPasswordHash(db, input.userId, input.passwordHash);
    }),

    /** Tells TMC the password is managed here. A 404 is final and recorded; the rest is retried. */
    notifyPasswordManagedHere: mapFailures(async (input: { upstreamId: number; userId: string }): Promise<void> => {
      try {
        await tmc.setPasswordManagedHere(input.upstreamId, input.userId);
      } catch (err) {
        if (err instanceof TmcError && err.kind === 'not_found') {
          await recordNotificationOutcome(db, input.userId, input.upstreamId, 'tmc_user_not_found');
          log.warn({ upstreamId: input.upstreamId, userId: input.userId }, 'TMC has no such user; notification abandoned');
          throw ApplicationFailure.create({ type: FailureType.TmcUserNotFound, message: err.message, nonRetryable: true });
        }
        throw err;
      }
      await recordNotificationOutcome(db, input.userId, input.upstreamId, 'delivered');
      notificationsDelivered.inc();
      log.info({ upstreamId: input.upstreamId, userId: input.userId }, 'TMC notified: password managed here');
    }),
  };
}
