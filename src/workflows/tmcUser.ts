/**
 * tmcUserWorkflow: creates a TMC user's account, sets its password, and tells TMC that the
 * password is now managed here.
 *
 * The API starts it with update-with-start (`setPasswordUpdate`) and answers TMC as soon as the
 * update returns, i.e. once the user row and hash are committed. The notification that follows
 * is retried by Temporal's retry policy for days, so neither a restart nor a long TMC outage
 * loses it. Concurrent creates for one upstream_id land in the same run: their updates are
 * applied in order (the last one written wins) and TMC is notified once.
 */
import {
  ApplicationFailure,
  ActivityFailure,
  type ActivityOptions,
  type LocalActivityOptions,
  allHandlersFinished,
  condition,
  patched,
  proxyActivities,
  proxyLocalActivities,
  continueAsNew,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { User } from '../db/users';
import {
  DEFAULT_MAX_UPDATES_PER_RUN,
  FailureType,
  setPasswordUpdate,
  type CarriedNotification,
  type CreateUserResponse,
  type TmcUserWorkflowInput,
  type TmcUserWorkflowResult,
} from './shared';

/**
 * Versioning. Runs started before this patch fetched the TMC user and wrote the row as two
 * regular activities, and `notifyPasswordManagedHere` both called TMC and recorded the outcome.
 * Patched runs (a) do the interactive step as one local activity, which saves two activity
 * round trips through the server and two workflow tasks on every create, and (b) record the
 * notification's outcome in an activity of its own, so a database outage after TMC has answered
 * does not make TMC get called again. Old runs replay their own path (test/histories/v1-*.json).
 * Once no run started before 2026-11-22 is open, replace this with `deprecatePatch` and drop the
 * old path and the two old activities.
 */
export const LOCAL_INTERACTIVE_PATCH = 'local-interactive-steps';

const interactiveOptions: ActivityOptions & LocalActivityOptions = {
  startToCloseTimeout: '8s',
  scheduleToCloseTimeout: '9s',
  retry: {
    initialInterval: '200ms',
    maximumAttempts: 3,
    nonRetryableErrorTypes: [FailureType.TmcUserNotFound, FailureType.TmcUnauthorized],
  },
};

/** Interactive steps: TMC is waiting for our answer (its client gives up after 10 s). */
const interactive = proxyLocalActivities<Activities>(interactiveOptions);
/** The same steps as regular activities, for runs started before the patch. */
const interactiveV1 = proxyActivities<Activities>(interactiveOptions);
/** Fencing a failed step must happen, however long PostgreSQL is away: retried without a cap. */
const settle = proxyActivities<Activities>({ startToCloseTimeout: '10s', retry: { initialInterval: '500ms', maximumInterval: '1m' } });

/**
 * Versioning. Patched runs give each interactive step an attempt token, and when a step fails
 * they fence it (`settleAbandonedAttempt`) before deciding anything: an attempt given up on can
 * no longer commit, and one that did commit is found, so its password is notified to TMC instead
 * of the run ending as `not_created` with a hash stored behind its back.
 */
export const RECONCILE_PATCH = 'reconcile-abandoned-attempts';

/**
 * Versioning. Patched runs continue as new before Temporal's per-run limits (see the workflow),
 * carrying the user and the notification's state; runs started before it never do.
 */
export const CONTINUE_AS_NEW_PATCH = 'continue-as-new-before-limits';

/** How long creates must be quiet before a run ends. */
const LINGER_MS = 2_000;

export async function tmcUserWorkflow(input: TmcUserWorkflowInput): Promise<TmcUserWorkflowResult> {
  let user: User | undefined = input.carried?.user;

  // Updates are applied in the order they were accepted. Those that queue up while a write is
  // in flight are coalesced: only the newest hash is written, and all of them are answered once
  // it is committed. The stored password is the same as if each had been written in turn (the
  // last one wins), at the cost of one round trip instead of one per concurrent create.
  const waiting: Array<{ passwordHash: string; answerBy?: number; resolve: (r: CreateUserResponse) => void; reject: (e: unknown) => void }> = [];
  let draining = false;
  let steps = 0;
  const drain = async () => {
    if (draining) return;
    draining = true;
    try {
      while (waiting.length > 0) {
        const batch = waiting.splice(0);
        const passwordHash = batch[batch.length - 1]!.passwordHash;
        // The earliest caller's deadline: each of them hears the answer while it still listens.
        const deadlines = batch.map((w) => w.answerBy).filter((d): d is number => d !== undefined);
        const answerBy = deadlines.length > 0 ? Math.min(...deadlines) : undefined;
        const attempt = patched(RECONCILE_PATCH) ? `${workflowInfo().runId}/${++steps}` : undefined;
        try {
          if (patched(LOCAL_INTERACTIVE_PATCH)) {
            if (user === undefined) user = await interactive.createUserFromTmc({ upstreamId: input.upstreamId, passwordHash, attempt, answerBy });
            else await interactive.setPasswordHash({ userId: user.id, passwordHash, upstreamId: input.upstreamId, attempt });
          } else if (user === undefined) {
            const tmcUser = await interactiveV1.fetchTmcUser(input.upstreamId);
            user = await interactiveV1.createUserWithPassword({ tmcUser, passwordHash });
          } else {
            await interactiveV1.setPasswordHash({ userId: user.id, passwordHash });
          }
          const response = { user, password_set: true };
          for (const w of batch) w.resolve(response);
        } catch (err) {
          for (const w of batch) w.reject(err);
          // The step failed, but an attempt of it may still be running, or may have committed
          // before it was given up. Fence it, and adopt what it wrote.
          if (attempt !== undefined) {
            const committed = await settle.settleAbandonedAttempt({ upstreamId: input.upstreamId, attempt });
            if (user === undefined && committed !== undefined) user = committed;
          }
        }
      }
    } finally {
      draining = false;
    }
  };
  // Handlers are answered before a failed step is settled: the run may end only once both are done.
  const idle = () => allHandlersFinished() && !draining;
  let updatesSeen = 0;
  setHandler(setPasswordUpdate, ({ passwordHash, answerBy }) => {
    updatesSeen++;
    const answer = new Promise<CreateUserResponse>((resolve, reject) => waiting.push({ passwordHash, answerBy, resolve, reject }));
    void drain();
    return answer;
  });

  // Runs that may continue as new (CONTINUE_AS_NEW_PATCH) do so before Temporal's limits per
  // run: its cap on updates (history.maxTotalUpdates, 2 000 by default; TMC calls create on every
  // login, and a run stays open while TMC refuses the notification), or when the server suggests
  // it (history size or event count). Decided once per run, at its start.
  const mayContinue = patched(CONTINUE_AS_NEW_PATCH);
  const maxUpdates = input.maxUpdatesPerRun ?? DEFAULT_MAX_UPDATES_PER_RUN;
  const nearLimit = () => mayContinue && (updatesSeen >= maxUpdates || workflowInfo().continueAsNewSuggested);
  /** Continues as new once every accepted create is answered, carrying the user and what is left to do. */
  const continueWith = async (notification: CarriedNotification, notifyBy: number | undefined): Promise<never> => {
    await condition(idle);
    return continueAsNew<typeof tmcUserWorkflow>({ upstreamId: input.upstreamId, notifyRetry: input.notifyRetry, maxUpdatesPerRun: input.maxUpdatesPerRun, carried: { user: user!, notification, notifyBy } });
  };

  if (input.carried === undefined) {
    await condition(idle);
    if (user === undefined) return { outcome: 'not_created' };
  }
  if (user === undefined) throw ApplicationFailure.nonRetryable('a continued run carries no user');

  const v2 = patched(LOCAL_INTERACTIVE_PATCH);
  let notification: 'delivered' | 'tmc_user_not_found' = 'delivered';
  if (input.carried === undefined || input.carried.notification === 'pending') {
    // The notification's retry budget counts from the first run's notification, not per run.
    const notifyBy = input.carried?.notifyBy ?? (mayContinue ? Date.now() + input.notifyRetry.budgetMs : undefined);
    const notifyRetry = {
      scheduleToCloseTimeout: notifyBy === undefined ? input.notifyRetry.budgetMs : Math.max(notifyBy - Date.now(), 1_000),
      retry: { initialInterval: input.notifyRetry.initialIntervalMs, backoffCoefficient: 2, maximumInterval: input.notifyRetry.maximumIntervalMs },
    };
    const { tellTmcPasswordManagedHere, notifyPasswordManagedHere } = proxyActivities<Activities>({
      startToCloseTimeout: '30s',
      ...notifyRetry,
      retry: { ...notifyRetry.retry, nonRetryableErrorTypes: [FailureType.TmcUserNotFound] },
    });
    const { recordTmcNotification } = proxyActivities<Activities>({ startToCloseTimeout: '10s', ...notifyRetry });
    const told = v2 ? tellTmcPasswordManagedHere({ upstreamId: input.upstreamId, userId: user.id }) : notifyPasswordManagedHere({ upstreamId: input.upstreamId, userId: user.id });
    try {
      if (mayContinue) {
        // While TMC is being told (for days, if TMC refuses), creates keep coming: continue as
        // new before the limit, and tell TMC again from the new run (it takes repeats).
        const outcome = await Promise.race([told.then(() => 'told' as const), condition(nearLimit).then(() => 'limit' as const)]);
        if (outcome === 'limit') return await continueWith('pending', notifyBy);
      } else {
        await told;
      }
    } catch (err) {
      if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === FailureType.TmcUserNotFound) {
        notification = 'tmc_user_not_found';
      } else {
        throw err;
      }
    }
    if (v2) await recordTmcNotification({ upstreamId: input.upstreamId, userId: user.id, outcome: notification });
  } else {
    notification = input.carried.notification;
  }

  // Linger until creates have been quiet for a moment, so a burst of them (TMC calls create
  // on every login, sometimes in parallel) joins this run instead of starting another one
  // that would notify TMC again.
  for (;;) {
    const seen = updatesSeen;
    if (mayContinue) {
      const quiet = await condition(() => updatesSeen !== seen || nearLimit(), LINGER_MS);
      if (nearLimit()) return await continueWith(notification, undefined);
      if (quiet) continue;
    } else if (await condition(() => updatesSeen !== seen, LINGER_MS)) {
      continue;
    }
    await condition(idle);
    if (updatesSeen === seen) break;
  }
  return { outcome: 'created', userId: user.id, notification };
}
