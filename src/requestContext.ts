/**
 * The request id of the work in progress: set by the API for each HTTP request and by the
 * worker for each activity (from the Temporal header `request-id`). pino adds it to every log
 * line written inside, and audit events record it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export const REQUEST_ID_HEADER = 'request-id';

const storage = new AsyncLocalStorage<{ requestId: string }>();

export function withRequestId<T>(requestId: string | undefined, fn: () => T): T {
  return requestId ? storage.run({ requestId }, fn) : fn();
}

export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}
