/**
 * Workflow interceptors: remember the request id that arrived with the start, signal or update
 * (header `request-id`), and pass it on to every activity, regular or local, the workflow
 * schedules. Deterministic: it only copies headers.
 */
import type { Payload } from '@temporalio/common';
import type { WorkflowInterceptorsFactory } from '@temporalio/workflow';

const HEADER = 'request-id';

export const interceptors: WorkflowInterceptorsFactory = () => {
  let current: Payload | undefined;
  const remember = (headers: Record<string, Payload>) => {
    if (headers[HEADER]) current = headers[HEADER];
  };
  const withRequestId = <I extends { headers: Record<string, Payload> }>(input: I): I => (current ? { ...input, headers: { ...input.headers, [HEADER]: current } } : input);
  return {
    inbound: [
      {
        execute: (input, next) => (remember(input.headers), next(input)),
        handleSignal: (input, next) => (remember(input.headers), next(input)),
        handleUpdate: (input, next) => (remember(input.headers), next(input)),
      },
    ],
    outbound: [
      {
        scheduleActivity: (input, next) => next(withRequestId(input)),
        scheduleLocalActivity: (input, next) => next(withRequestId(input)),
      },
    ],
  };
};
