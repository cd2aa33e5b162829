/**
 * Carries the request id from the API through Temporal to the activities, as a header (not as
 * workflow data): the client adds it to everything it sends, the workflow interceptors
 * (src/workflows/interceptors.ts) pass it on to the activities they schedule, and the activity
 * interceptor makes it current for logs and audit events.
 */
import type { WorkflowClientInterceptor } from '@temporalio/client';
import { defaultPayloadConverter, type Headers } from '@temporalio/common';
import type { ActivityInterceptors } from '@temporalio/worker';
import { currentRequestId, REQUEST_ID_HEADER, withRequestId } from '../requestContext';

function withHeader(headers: Headers): Headers {
  const requestId = currentRequestId();
  return requestId ? { ...headers, [REQUEST_ID_HEADER]: defaultPayloadConverter.toPayload(requestId) } : headers;
}

export const requestIdClientInterceptor: WorkflowClientInterceptor = {
  start: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  startWithDetails: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  signal: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  signalWithStart: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  startUpdate: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  startUpdateWithStart: (input, next) =>
    next({ ...input, workflowStartHeaders: withHeader(input.workflowStartHeaders), updateHeaders: withHeader(input.updateHeaders) }),
};

export const requestIdActivityInterceptor = (): ActivityInterceptors => ({
  inbound: {
    execute: (input, next) => {
      const header = input.headers[REQUEST_ID_HEADER];
      const requestId = header ? defaultPayloadConverter.fromPayload<string>(header) : undefined;
      return withRequestId(typeof requestId === 'string' ? requestId : undefined, () => next(input));
    },
  },
});
