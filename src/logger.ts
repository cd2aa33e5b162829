/**
 * pino JSON logs. Secrets are redacted by path, so a stray `log.info({ body })` or a logged
 * request cannot leak a password, token, hash or the shared secret.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { currentRequestId } from './requestContext';

export type { Logger };

const SECRET_KEYS = [
  'authorization',
  'password',
  'old_password',
  'new_password',
  'passwordHash',
  'password_hash',
  'token',
  'tokenHash',
  'token_hash',
  'accessToken',
  'sharedSecret',
];

export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'req.headers.authorization',
  'req.headers.cookie',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tmc-durable-accounts' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Every line written while serving a request or running an activity carries its id.
      mixin: () => {
        const requestId = currentRequestId();
        return requestId ? { requestId } : {};
      },
    },
    destination,
  );
}
