/**
 * The service's configuration for a local stack (tests, benchmarks, fault suite): one place that
 * says how the fakes are wired in and which settings differ from production's defaults.
 */
import { randomUUID } from 'node:crypto';

export const SECRET = 'test-shared-secret';
export const CODEC_TOKEN = 'test-codec-token-0123456789';

export interface LocalStack {
  databaseUrl: string;
  temporalAddress: string;
  tmcUrl: string;
  smtpUrl: string;
  port: number;
  /** The task queue's prefix (a fresh queue per stack) and the mail's sender domain. */
  name: 'test' | 'bench';
}

export function serviceEnv(s: LocalStack): Record<string, string> {
  return {
    TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT: SECRET,
    DATABASE_URL: s.databaseUrl,
    TEMPORAL_ADDRESS: s.temporalAddress,
    TEMPORAL_TASK_QUEUE: `${s.name}-${randomUUID()}`,
    TMC_BASE_URL: s.tmcUrl,
    TMC_ACCESS_TOKEN: 'tmc-admin-token',
    RATELIMIT_PROTECTION_SAFE_API_KEY: 'ratelimit-key',
    // Notifications retried every 200 ms–1 s instead of 1 s–10 min, so tests see recovery soon.
    TMC_NOTIFY_INITIAL_INTERVAL: '200ms',
    TMC_NOTIFY_MAX_INTERVAL: '1s',
    LOG_LEVEL: 'info',
    PORT: String(s.port),
    PUBLIC_BASE_URL: `http://127.0.0.1:${s.port}`,
    SMTP_URL: s.smtpUrl,
    MAIL_FROM: `Accounts <accounts@${s.name}.invalid>`,
    CODEC_AUTH_TOKEN: CODEC_TOKEN,
    // Tests and load runs hammer single identifiers from one address on purpose;
    // test/rateLimit.test.ts turns the limits on.
    RATE_LIMIT_DISABLED: 'true',
  };
}

/** Polls `check` until it returns a truthy value or the time runs out. */
export async function eventually<T>(check: () => Promise<T> | T, { timeoutMs = 20_000, intervalMs = 100, what = 'condition' } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`${what} not met within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`);
}
