/**
 * tmcUserWorkflow: creates a TMC user's account, sets its password, and tells TMC that the
 * password is now managed here.
 *
 * The API starts it with update-with-start (`setPasswordUpdate`) and answers TMC as soon as the
 * update returns, i.e. once the user row and hash are committed. The notification that follows
 * is retried by Temporal's retry policy for days, so neither a restart nor a long TMC outage
 * loses it. Concurrent creates for one upstream_id land in the same run: their updates are
 * applied one after another (the last one written wins) and TMC is notified once.
 */
import { ApplicationFailure, ActivityFailure, allHandlersFinished, condition, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { User } from '../db/users';
import { FailureType, setPasswordUpdate, type TmcUserWorkflowInput, type TmcUserWorkflowResult } from './shared';

/** Interactive steps: TMC is waiting for our answer (its client gives up after 10 s). */
const interactive = proxyActivities<Activities>({
  startToCloseTimeout: '8s',
  scheduleToCloseTimeout: '9s',
  retry: {
    initialInterval: '200ms',
    maximumAttempts: 3,
    nonRetryableErrorTypes: [FailureType.TmcUserNotFound, FailureType.TmcUnauthorized],
  },
});

export async function tmcUserWorkflow(input: TmcUserWorkflowInput): Promise<TmcUserWorkflowResult> {
  let user: User | undefined;

  // Updates run strictly one after another, in the order they were accepted.
  let queue: Promise<unknown> = Promise.resolve();
  setHandler(setPasswordUpdate, ({ passwordHash }) => {
    const step = queue.then(async () => {
      if (user === undefined) {
        const tmcUser = await interactive.fetchTmcUser(input.upstreamId);
        user = await interactive.createUserWithPassword({ tmcUser, passwordHash });
      } else {
        await interactive.setPasswordHash({ userId: user.id, passwordHash });
      }
      return { user, password_set: true };
    });
    queue = step.catch(() => undefined);
    return step;
  });

  await condition(allHandlersFinished);
  if (user === undefined) return { outcome: 'not_created' };

  const { notifyPasswordManagedHere } = proxyActivities<Activities>({
    startToCloseTimeout: '30s',
    scheduleToCloseTimeout: input.notifyRetry.budgetMs,
    retry: {
      initialInterval: input.notifyRetry.initialIntervalMs,
      backoffCoefficient: 2,
      maximumInterval: input.notifyRetry.maximumIntervalMs,
      nonRetryableErrorTypes: [FailureType.TmcUserNotFound],
    },
  });
  let notification: 'delivered' | 'tmc_user_not_found' = 'delivered';
  try {
    await notifyPasswordManagedHere({ upstreamId: input.upstreamId, userId: user.id });
  } catch (err) {
    if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === FailureType.TmcUserNotFound) {
      notification = 'tmc_user_not_found';
    } else {
      throw err;
    }
  }

  // Let password updates that arrived during the notification finish before the run ends.
  await condition(allHandlersFinished);
  return { outcome: 'created', userId: user.id, notification };
}
