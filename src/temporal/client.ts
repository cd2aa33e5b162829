/**
 * The Temporal client every process of the service uses. The connection is lazy, so the API
 * starts (and answers 503) while Temporal is down, and reconnects by itself when it returns.
 */
import { Client } from '@temporalio/client';
import { dataConverter, type EncryptionKey } from './codec';
import { lazyClientConnection, type TemporalConnectionConfig } from './connection';
import { requestIdClientInterceptor } from './interceptors';

/**
 * The API's and the CLIs' client, over the connection of `connection` (src/temporal/connection.ts:
 * address, namespace, TLS, API key). Throws if it has no address.
 */
export function createTemporalClient(connection: TemporalConnectionConfig, keys: EncryptionKey[]): Client {
  // A short connect timeout: while Temporal is down, requests fail fast instead of hanging.
  return new Client({
    connection: lazyClientConnection(connection, 3_000),
    namespace: connection.namespace,
    dataConverter: dataConverter(keys),
    interceptors: { workflow: [requestIdClientInterceptor] },
  });
}

/** Temporal did not answer within the time an interactive request can wait. */
export class TemporalUnavailableError extends Error {
  override name = 'TemporalUnavailableError';
}

/** Whether an error means "the Temporal service could not be reached in time". */
export function isTemporalUnavailable(err: unknown): boolean {
  if (err instanceof TemporalUnavailableError) return true;
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    // gRPC UNAVAILABLE (14) and DEADLINE_EXCEEDED (4), or a failed initial connection.
    if (code === 14 || code === 4) return true;
    if (e.name === 'TransportError' || /Failed to connect|ECONNREFUSED|Deadline exceeded|UNAVAILABLE|No connection established/i.test(e.message)) {
      return true;
    }
  }
  return false;
}
