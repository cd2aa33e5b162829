/** How the API starts and talks to workflows. */
import { WithStartWorkflowOperation, type Client } from '@temporalio/client';
import { TemporalUnavailableError } from './client';
import type { RetryBudget, CreateUserResponse } from '../workflows/shared';
import { setPasswordUpdate, tmcUserWorkflowId } from '../workflows/shared';
import type { tmcUserWorkflow } from '../workflows/tmcUser';

/** How long a request waits for Temporal before it is answered 503; TMC gives up at 10 s. */
const INTERACTIVE_DEADLINE_MS = 8_000;

/**
 * Runs update-with-start on the user's creation workflow and returns once the password hash is
 * committed. A create that arrives while a run is finishing is retried once against a new run.
 */
export async function createTmcUser(
  client: Client,
  taskQueue: string,
  input: { upstreamId: number; passwordHash: string; notifyRetry: RetryBudget; requestId?: string },
): Promise<CreateUserResponse> {
  const deadline = Date.now() + INTERACTIVE_DEADLINE_MS;
  // The gRPC deadline bounds each call; the abort signal bounds the whole exchange, retries included.
  const signal = AbortSignal.timeout(INTERACTIVE_DEADLINE_MS);
  for (let attempt = 1; ; attempt++) {
    const start = new WithStartWorkflowOperation<typeof tmcUserWorkflow>('tmcUserWorkflow', {
      workflowId: tmcUserWorkflowId(input.upstreamId),
      taskQueue,
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [{ upstreamId: input.upstreamId, notifyRetry: input.notifyRetry }],
      staticSummary: `TMC user ${input.upstreamId}`,
      memo: input.requestId ? { requestId: input.requestId } : undefined,
    });
    try {
      return await client.withAbortSignal(signal, () =>
        client.withDeadline(deadline, () =>
          client.workflow.executeUpdateWithStart(setPasswordUpdate, {
            args: [{ passwordHash: input.passwordHash }],
            startWorkflowOperation: start,
          }),
        ),
      );
    } catch (err) {
      if (signal.aborted) throw new TemporalUnavailableError(`no answer from Temporal within ${INTERACTIVE_DEADLINE_MS} ms`);
      if (attempt < 3 && isRunClosingRace(err)) continue;
      throw err;
    }
  }
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
