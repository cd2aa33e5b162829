/** How the API starts and talks to workflows. */
import { WithStartWorkflowOperation, type Client } from '@temporalio/client';
import { TemporalUnavailableError } from './client';
import { isMissingSearchAttribute, registerCommand, registerSearchAttributes } from './searchAttributes';
import type { accountExistsNoticeWorkflow, signupWorkflow } from '../workflows/signup';
import type { CreateUserResponse, RetryBudget, SignupWorkflowInput } from '../workflows/shared';
import {
  accountExistsWorkflowId,
  emailVerifiedSignal,
  resendSignal,
  setPasswordUpdate,
  SignupStateKey,
  signupWorkflowId,
  tmcUserWorkflowId,
} from '../workflows/shared';
import type { tmcUserWorkflow } from '../workflows/tmcUser';

/** How long a request waits for Temporal before it is answered 503; TMC gives up at 10 s. */
export const INTERACTIVE_DEADLINE_MS = 8_000;

/**
 * Runs update-with-start on the user's creation workflow and returns once the password hash is
 * committed. A create that arrives while a run is finishing is retried once against a new run.
 */
export async function createTmcUser(
  client: Client,
  taskQueue: string,
  input: { upstreamId: number; passwordHash: string; notifyRetry: RetryBudget; maxUpdatesPerRun?: number; requestId?: string },
  /** When the caller's answer is due (ms since the epoch); by default 8 s from now. */
  deadline = Date.now() + INTERACTIVE_DEADLINE_MS,
): Promise<CreateUserResponse> {
  for (let attempt = 1; ; attempt++) {
    const start = new WithStartWorkflowOperation<typeof tmcUserWorkflow>('tmcUserWorkflow', {
      workflowId: tmcUserWorkflowId(input.upstreamId),
      taskQueue,
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [{ upstreamId: input.upstreamId, notifyRetry: input.notifyRetry, maxUpdatesPerRun: input.maxUpdatesPerRun }],
      staticSummary: `TMC user ${input.upstreamId}`,
      memo: input.requestId ? { requestId: input.requestId } : undefined,
    });
    try {
      return await settleBy(client, deadline, () =>
        client.workflow.executeUpdateWithStart(setPasswordUpdate, {
          args: [{ passwordHash: input.passwordHash, answerBy: deadline }],
          startWorkflowOperation: start,
        }),
      );
    } catch (err) {
      if (err instanceof TemporalUnavailableError) throw err;
      if (attempt < 3 && isRunClosingRace(err)) continue;
      // Too many creates for this user in flight at once, or the run reached the server's cap on
      // updates (it continues as new once its accepted creates are done): try again shortly,
      // within the deadline; the retry lands on the new run.
      if ((isResourceExhausted(err) || isUpdateCapReached(err)) && deadline - Date.now() > 300) {
        await new Promise((r) => setTimeout(r, 100 + Math.floor(Math.random() * 150)));
        continue;
      }
      throw err;
    }
  }
}

/**
 * Runs one client call so that it settles by `deadline` (ms since the epoch) whatever the
 * client library is doing: the gRPC deadline and the abort signal bound the call, and the race
 * covers a connection attempt still in progress, which neither of them interrupts. Running out
 * of time is a TemporalUnavailableError (503), however it shows.
 */
async function settleBy<T>(client: Client, deadline: number, call: () => Promise<T>): Promise<T> {
  const signal = AbortSignal.timeout(Math.max(deadline - Date.now(), 0));
  try {
    return await Promise.race([client.withAbortSignal(signal, () => client.withDeadline(deadline, call)), aborted(signal)]);
  } catch (err) {
    // The gRPC deadline can beat the abort timer by a hair; an update then says it was cancelled.
    if (signal.aborted || (err as Error)?.name === 'WorkflowUpdateRPCTimeoutOrCancelledError') {
      throw new TemporalUnavailableError('no answer from Temporal in time');
    }
    throw err;
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(new TemporalUnavailableError('no answer from Temporal in time'));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

/** gRPC RESOURCE_EXHAUSTED, e.g. the server's cap on updates in flight for one workflow. */
function isResourceExhausted(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === 8 || /RESOURCE_EXHAUSTED|in-flight updates|too many/i.test(e.message)) return true;
  }
  return false;
}

/** history.maxTotalUpdates: "The limit on the total number of distinct updates in this workflow has been reached". */
function isUpdateCapReached(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if (/limit on the total number of distinct updates/i.test(e.message)) return true;
  }
  return false;
}

/** The run we reached completed before accepting our update; a fresh run will take it. */
function isRunClosingRace(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if (e.name === 'WorkflowNotFoundError' || /workflow execution already completed|completed before the update/i.test(e.message)) {
      return true;
    }
  }
  return false;
}

// ---- signup ----------------------------------------------------------------------------------

export interface SignupStart {
  signupId: string;
  userId: string;
  tenantId: string;
  tenantIdentifier: string;
  expiresAt: Date;
  resendIntervalMs: number;
  requestId?: string;
}

function signupOptions(taskQueue: string, s: SignupStart) {
  return {
    workflowId: signupWorkflowId(s.userId),
    taskQueue,
    args: [
      { signupId: s.signupId, userId: s.userId, tenantId: s.tenantId, expiresAtMs: s.expiresAt.getTime(), resendIntervalMs: s.resendIntervalMs },
    ] as [SignupWorkflowInput],
    typedSearchAttributes: [{ key: SignupStateKey, value: 'AwaitingVerification' }],
    staticSummary: `Signup in tenant ${s.tenantIdentifier} for user ${s.userId}`,
    memo: { tenant: s.tenantIdentifier, userId: s.userId, ...(s.requestId ? { requestId: s.requestId } : {}) },
  };
}

/** Starts the signup's workflow; joins it if it is already running. */
export async function startSignup(client: Client, taskQueue: string, s: SignupStart, deadline = Date.now() + INTERACTIVE_DEADLINE_MS): Promise<void> {
  await withSignupState(client, deadline, () =>
    client.workflow.start<typeof signupWorkflow>('signupWorkflow', { ...signupOptions(taskQueue, s), workflowIdConflictPolicy: 'USE_EXISTING' }),
  );
}

/** `SignupState` is not registered on the cluster, and this process could not register it. */
export class SearchAttributeMissingError extends TemporalUnavailableError {
  override name = 'SearchAttributeMissingError';
}

/** One registration attempt at a time per client (concurrent signups share it). */
const registering = new WeakMap<Client, Promise<unknown>>();

/**
 * Runs a call that sets `SignupState`. On a cluster where the attribute is missing (no worker has
 * registered it yet), registers it and retries until it is usable or the deadline comes; if it
 * cannot be registered, throws a SearchAttributeMissingError (503) naming it and the command
 * that registers it, instead of Temporal's INVALID_ARGUMENT (which was a 500).
 */
async function withSignupState<T>(client: Client, deadline: number, call: () => Promise<T>): Promise<T> {
  try {
    return await settleBy(client, deadline, call);
  } catch (err) {
    if (!isMissingSearchAttribute(err)) throw err;
  }
  const namespace = client.options.namespace;
  let attempt = registering.get(client);
  if (!attempt) {
    attempt = registerSearchAttributes(client.connection, namespace).finally(() => registering.delete(client));
    registering.set(client, attempt);
  }
  try {
    await attempt;
  } catch (err) {
    throw new SearchAttributeMissingError(
      `search attribute SignupState is not registered in namespace ${namespace}, and registering it failed (${(err as Error).message}); register it: ${registerCommand(namespace)}`,
    );
  }
  // The frontend may take a moment to see the new attribute.
  for (;;) {
    try {
      return await settleBy(client, deadline, call);
    } catch (err) {
      if (!isMissingSearchAttribute(err)) throw err;
      if (deadline - Date.now() < 600) {
        throw new SearchAttributeMissingError(`search attribute SignupState was registered in namespace ${namespace} but is not usable yet`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * Asks a pending signup for a fresh link. Signal-with-start: if the workflow is not running (its
 * starter is still on its way or failed, or an operator terminated it), this starts a fresh run
 * from the same reserved row, which continues from what the row records.
 */
export async function resumeSignup(client: Client, taskQueue: string, s: SignupStart, deadline = Date.now() + INTERACTIVE_DEADLINE_MS): Promise<void> {
  await withSignupState(client, deadline, () =>
    client.workflow.signalWithStart<typeof signupWorkflow>('signupWorkflow', { ...signupOptions(taskQueue, s), signal: resendSignal, signalArgs: [] }),
  );
}

/**
 * Tells the signup's workflow that a link was confirmed (the token's row id, never the token).
 * Returns 'closed' when no run of it is open: it completed (the caller re-reads the signup's row
 * for the answer) or was terminated by an operator (see restartVerifiedSignup).
 */
export async function signalEmailVerified(
  client: Client,
  workflowId: string,
  tokenId: string,
  deadline = Date.now() + INTERACTIVE_DEADLINE_MS,
): Promise<'signalled' | 'closed'> {
  try {
    await settleBy(client, deadline, () => client.workflow.getHandle(workflowId).signal(emailVerifiedSignal, { tokenId }));
    return 'signalled';
  } catch (err) {
    if (isWorkflowClosed(err)) return 'closed';
    throw err;
  }
}

/**
 * A pending signup whose workflow has closed without ending it (terminated from the UI or the
 * CLI): a fresh run from the same row, told of the confirmation at its start. The fresh run's
 * activities find the candidate and the mail already done (they are idempotent) and go straight
 * to the activation, so the row and the workflow agree again.
 */
export async function restartVerifiedSignup(client: Client, taskQueue: string, s: SignupStart, tokenId: string, deadline = Date.now() + INTERACTIVE_DEADLINE_MS): Promise<void> {
  await settleBy(client, deadline, () =>
    client.workflow.signalWithStart<typeof signupWorkflow, [{ tokenId: string }]>('signupWorkflow', {
      ...signupOptions(taskQueue, s),
      signal: emailVerifiedSignal,
      signalArgs: [{ tokenId }],
    }),
  );
}

/** The workflow has no open run: the server answers NotFound ("workflow execution already completed"). */
export function isWorkflowClosed(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if (e.name === 'WorkflowNotFoundError' || /workflow execution already completed/i.test(e.message)) return true;
  }
  return false;
}

/** Sends the "account already exists" notice, at most once per resend interval per user. */
export async function notifyExistingAccount(
  client: Client,
  taskQueue: string,
  input: { userId: string; tenantId: string; resendIntervalMs: number },
  deadline = Date.now() + INTERACTIVE_DEADLINE_MS,
): Promise<void> {
  await settleBy(client, deadline, () =>
    client.workflow.start<typeof accountExistsNoticeWorkflow>('accountExistsNoticeWorkflow', {
      workflowId: accountExistsWorkflowId(input.userId),
      taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      staticSummary: `Existing-account notice for user ${input.userId}`,
    }),
  );
}
