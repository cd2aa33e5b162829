/**
 * Configuration, read once from the environment and validated with zod.
 *
 * Every process (API, worker, `npm start`) calls `loadConfig()`; a missing or bad value
 * stops start-up with one line per problem instead of failing later at the first request.
 */
import { msToNumber } from '@temporalio/common/lib/time';
import { z } from 'zod';
import { loadTemporalConnection } from './temporal/connection';

/** A duration such as `500ms`, `30s`, `15m`, `24h` or `7d`, as milliseconds. */
const duration = z.string().transform((value, ctx) => {
  let ms: number;
  try {
    ms = msToNumber(value as Parameters<typeof msToNumber>[0]);
  } catch {
    ms = Number.NaN;
  }
  if (!Number.isFinite(ms) || ms <= 0) {
    ctx.addIssue({ code: 'custom', message: `expected a duration like 30s, 15m or 24h, got "${value}"` });
    return z.NEVER;
  }
  return ms;
});

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const port = z.coerce.number().int().min(0).max(65535);

const envSchema = z.object({
  NODE_ENV: z.string().default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PORT: port.default(3000),
  /** After SIGTERM, how long the API keeps serving (answering `Connection: close`) before it stops listening. */
  SHUTDOWN_DRAIN: duration.default(3_000),
  /** Largest request body the API reads, in bytes; larger ones get 413. */
  MAX_BODY_BYTES: z.coerce.number().int().positive().default(64 * 1024),
  /** Password hashes and verifications the API runs at once (src/hashing.ts); unset: libuv's pool size less two. */
  HASH_CONCURRENCY: z.coerce.number().int().positive().optional(),
  /** Hashes that may wait for a slot; beyond it, 503 with Retry-After. */
  HASH_QUEUE_MAX: z.coerce.number().int().positive().default(64),

  DATABASE_URL: z.string().url().optional(),
  DATABASE_POOL_MAX: z.coerce.number().int().positive().default(10),
  /** Longest a query may run (statement_timeout); a connection silent 2 s past it is dropped. */
  DATABASE_QUERY_TIMEOUT: duration.default(5_000),

  /**
   * How to reach Temporal: Temporal's own environment configuration, read by
   * src/temporal/connection.ts with @temporalio/envconfig (listed here so they are documented
   * and checked with the rest). Variables override the profile of TEMPORAL_CONFIG_FILE.
   */
  TEMPORAL_ADDRESS: z.string().min(1).optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).optional(),
  TEMPORAL_API_KEY: z.string().optional(),
  TEMPORAL_TLS: z.string().optional(),
  TEMPORAL_TLS_CLIENT_CERT_PATH: z.string().optional(),
  TEMPORAL_TLS_CLIENT_CERT_DATA: z.string().optional(),
  TEMPORAL_TLS_CLIENT_KEY_PATH: z.string().optional(),
  TEMPORAL_TLS_CLIENT_KEY_DATA: z.string().optional(),
  TEMPORAL_TLS_SERVER_CA_CERT_PATH: z.string().optional(),
  TEMPORAL_TLS_SERVER_CA_CERT_DATA: z.string().optional(),
  TEMPORAL_TLS_SERVER_NAME: z.string().optional(),
  TEMPORAL_CONFIG_FILE: z.string().optional(),
  TEMPORAL_PROFILE: z.string().optional(),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('accounts'),
  TEMPORAL_CLI_PATH: z.string().min(1).optional(),
  /** `keyId:base64-of-32-bytes,…`: the first encrypts Temporal payloads, all decrypt. */
  PAYLOAD_ENCRYPTION_KEYS: z.string().min(1).optional(),
  /** Guards the codec endpoints the Temporal UI calls (/codec/…). */
  CODEC_AUTH_TOKEN: z.string().min(16).optional(),
  /** Origins allowed to call the codec endpoints from a browser (the Temporal UI), comma-separated. */
  CODEC_CORS_ORIGINS: z.string().default('http://localhost:8233,http://127.0.0.1:8233'),

  TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT: z.string().min(1),
  TMC_BASE_URL: z.string().url().default('https://tmc.mooc.fi'),
  TMC_ACCESS_TOKEN: z.string().default(''),
  RATELIMIT_PROTECTION_SAFE_API_KEY: z.string().default(''),
  TMC_REQUEST_TIMEOUT: duration.default(15_000),
  /** Retry policy of the "password managed here" notification: first interval, cap, and total budget. */
  TMC_NOTIFY_INITIAL_INTERVAL: duration.default(1_000),
  TMC_NOTIFY_MAX_INTERVAL: duration.default(10 * 60_000),
  TMC_NOTIFY_RETRY_BUDGET: duration.default(7 * 24 * 3_600_000),
  /** mooc.fi's GraphQL API, asked for a new TMC user's id as headless-lms does; unset or empty: off. */
  MOOCFI_GRAPHQL_URL: z.string().url().optional(),
  /** The longest the mooc.fi id lookup may take. */
  MOOCFI_TIMEOUT: duration.default(2_000),
  /** Creates one run of a TMC user's workflow takes before it continues as new (below Temporal's history.maxTotalUpdates). */
  TMC_UPDATES_PER_RUN: z.coerce.number().int().min(2).default(1_000),

  /**
   * Until this instant (RFC 3339), a password that does not match in its NFC form is tried again
   * as typed: rows headless-lms hashed before it normalized. headless-lms's own cut-off is the default.
   */
  PASSWORD_RAW_FALLBACK_UNTIL: z.iso.datetime({ offset: true }).default('2027-06-12T00:00:00Z').transform((v) => new Date(v)),

  /** Port of the worker's own /metrics (activity counters). */
  WORKER_METRICS_PORT: port.default(9464),
  /** host:port where the Temporal SDK serves its Prometheus metrics (worker processes). */
  TEMPORAL_SDK_METRICS_ADDRESS: z.string().default('0.0.0.0:9465'),
  /**
   * How many workflow runs a worker keeps in memory (its sticky cache). The SDK's default is
   * sized from the heap limit (2 310 for a 4 GiB heap) and filled the worker with waiting signups
   * (~0.2 MiB each, 1.1 GiB RSS at 10 000). Signups wait for hours, so caching them buys nothing:
   * an evicted one is replayed from its short history when it wakes. 100 holds every create and
   * signup in flight at once (docs/benchmarks.md, section 4).
   */
  WORKER_MAX_CACHED_WORKFLOWS: z.coerce.number().int().positive().default(100),
  /**
   * How long a workflow task waits on a worker's own (sticky) queue before any worker may take
   * it. After a worker dies, its waiting workflows' next tasks wait this long: the SDK's 10 s
   * made the first verification click after a crash miss its 8 s deadline (docs/benchmarks.md).
   */
  WORKER_STICKY_QUEUE_TIMEOUT: duration.default(2_000),
  /**
   * How far V8 grows a heap beyond what a full garbage collection left alive, in percent: 20
   * grows it to 1.2× the live objects. V8's own factor (up to 4×, chosen by its GC speed) let a
   * burst of 10 000 signups leave the worker at 366 MiB RSS with ~50 MiB alive on its main heap;
   * 20 kept it under 300 MiB at the same throughput (docs/benchmarks.md, section 4). 0 leaves
   * V8's factor. Applies to the whole worker process, its workflow thread included.
   */
  WORKER_HEAP_GROWING_PERCENT: z.coerce.number().int().min(0).max(300).default(20),
  /** Activity tasks (regular activities: the TMC notification, mail, the activation) a worker runs at once. */
  WORKER_MAX_CONCURRENT_ACTIVITIES: z.coerce.number().int().positive().optional(),
  /** Local activities (a signup's candidate user and its mail) a worker runs at once. */
  WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES: z.coerce.number().int().positive().optional(),
  /** Workflow tasks a worker processes at once: 2 up to WORKER_MAX_CACHED_WORKFLOWS; unset, 40 or the cache size if smaller. */
  WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: z.coerce.number().int().positive().optional(),

  /** true: every rate limit is off. For load tests and benchmarks only. */
  RATE_LIMIT_DISABLED: bool.default(false),
  /** true: calls carrying the TMC shared secret skip the per-IP limits (TMC calls from one address). */
  RATE_LIMIT_EXEMPT_TMC: bool.default(true),
  /**
   * How many reverse proxies stand in front of the API, each appending the address it got the
   * request from to X-Forwarded-For. The client is the entry that many places from the right (the
   * last hop no trusted proxy added); entries left of it are whatever the client sent. 0: no
   * proxy, the socket's address is the client. Replaces TRUST_PROXY.
   */
  TRUSTED_PROXY_COUNT: z.coerce.number().int().min(0).max(16).default(0),

  DEFAULT_TENANT: z.string().min(1).default('default'),
  /** Base URL of this API as users' browsers reach it; verification links start with it. */
  PUBLIC_BASE_URL: z.string().url().optional(),
  /** SMTP server for outgoing mail, e.g. smtp://user:pass@mail.example.org:587. */
  SMTP_URL: z.string().url().optional(),
  MAIL_FROM: z.string().min(3).default('Accounts <no-reply@localhost>'),
  SIGNUP_VERIFICATION_TTL: duration.default(24 * 3_600_000),
  SIGNUP_RESEND_INTERVAL: duration.default(60_000),
  SIGNUP_REVEAL_EXISTING: bool.default(false),
});

/** Every environment variable the service reads. */
export const ENV_VARS = Object.keys(envSchema.shape);

export type Config = ReturnType<typeof loadConfig>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; throws a ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  // An empty string means "unset" for optional variables, as in most .env files.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const name = issue.path.join('.');
      const message = issue.code === 'invalid_type' && cleaned[name] === undefined ? 'is required' : issue.message;
      return `  ${name}: ${message}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  // TRUST_PROXY=true took the leftmost X-Forwarded-For entry, which any client can forge: a
  // configuration still asking for it must say how many proxies there are instead.
  if (cleaned.TRUST_PROXY !== undefined && !['false', '0', 'no'].includes(cleaned.TRUST_PROXY) && cleaned.TRUSTED_PROXY_COUNT === undefined) {
    throw new ConfigError(
      'invalid configuration:\n  TRUST_PROXY: replaced by TRUSTED_PROXY_COUNT, the number of reverse proxies in front of the API (1 for one proxy); remove TRUST_PROXY',
    );
  }
  // The SDK needs 2 workflow-task slots or more, and no more than runs it may cache (version 1.24
  // no longer checks this itself once the limit is given as a number).
  const wfts = e.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS;
  if (wfts !== undefined && (wfts < 2 || wfts > e.WORKER_MAX_CACHED_WORKFLOWS)) {
    throw new ConfigError(`invalid configuration:\n  WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: must be 2 or more and at most WORKER_MAX_CACHED_WORKFLOWS (${e.WORKER_MAX_CACHED_WORKFLOWS}), got ${wfts}`);
  }
  const temporalConnection = loadTemporalConnection(env);
  if (!temporalConnection.ok) throw new ConfigError(`invalid configuration:\n${temporalConnection.problems.map((p) => `  ${p}`).join('\n')}`);
  if (e.NODE_ENV === 'production') {
    const missing = [
      !e.SMTP_URL && '  SMTP_URL: is required in production (without it mail is only printed)',
      !e.PAYLOAD_ENCRYPTION_KEYS && '  PAYLOAD_ENCRYPTION_KEYS: is required in production (without it a key is generated into .data/)',
    ].filter(Boolean);
    if (missing.length) throw new ConfigError(`invalid configuration:\n${missing.join('\n')}`);
  }
  return {
    production: e.NODE_ENV === 'production',
    logLevel: e.LOG_LEVEL,
    http: { port: e.PORT, maxBodyBytes: e.MAX_BODY_BYTES, trustedProxyCount: e.TRUSTED_PROXY_COUNT, shutdownDrainMs: e.SHUTDOWN_DRAIN },
    hashing: { concurrency: e.HASH_CONCURRENCY, maxQueued: e.HASH_QUEUE_MAX },
    rateLimit: { disabled: e.RATE_LIMIT_DISABLED, exemptTmc: e.RATE_LIMIT_EXEMPT_TMC },
    database: { url: e.DATABASE_URL, poolMax: e.DATABASE_POOL_MAX, queryTimeoutMs: e.DATABASE_QUERY_TIMEOUT },
    temporal: {
      /** Address, namespace, TLS and API key: pass to src/temporal/connection.ts, never log (secrets). */
      connection: temporalConnection.connection,
      address: temporalConnection.connection.address,
      namespace: temporalConnection.connection.namespace,
      taskQueue: e.TEMPORAL_TASK_QUEUE,
      cliPath: e.TEMPORAL_CLI_PATH,
      encryptionKeys: e.PAYLOAD_ENCRYPTION_KEYS,
    },
    codec: {
      authToken: e.CODEC_AUTH_TOKEN,
      corsOrigins: e.CODEC_CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean),
    },
    tmc: {
      sharedSecret: e.TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT,
      baseUrl: e.TMC_BASE_URL.replace(/\/+$/, ''),
      accessToken: e.TMC_ACCESS_TOKEN,
      ratelimitApiKey: e.RATELIMIT_PROTECTION_SAFE_API_KEY,
      timeoutMs: e.TMC_REQUEST_TIMEOUT,
      updatesPerRun: e.TMC_UPDATES_PER_RUN,
      notifyRetry: {
        initialIntervalMs: e.TMC_NOTIFY_INITIAL_INTERVAL,
        maximumIntervalMs: e.TMC_NOTIFY_MAX_INTERVAL,
        budgetMs: e.TMC_NOTIFY_RETRY_BUDGET,
      },
    },
    passwords: { rawFallbackUntil: e.PASSWORD_RAW_FALLBACK_UNTIL },
    signup: {
      defaultTenant: e.DEFAULT_TENANT,
      publicBaseUrl: (e.PUBLIC_BASE_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, ''),
      verificationTtlMs: e.SIGNUP_VERIFICATION_TTL,
      resendIntervalMs: e.SIGNUP_RESEND_INTERVAL,
      revealExisting: e.SIGNUP_REVEAL_EXISTING,
    },
    mail: { smtpUrl: e.SMTP_URL, from: e.MAIL_FROM },
    moocfi: { graphqlUrl: e.MOOCFI_GRAPHQL_URL ?? '', accessToken: e.TMC_ACCESS_TOKEN, timeoutMs: e.MOOCFI_TIMEOUT },
    worker: {
      metricsPort: e.WORKER_METRICS_PORT,
      sdkMetricsAddress: e.TEMPORAL_SDK_METRICS_ADDRESS,
      maxCachedWorkflows: e.WORKER_MAX_CACHED_WORKFLOWS,
      stickyQueueTimeoutMs: e.WORKER_STICKY_QUEUE_TIMEOUT,
      heapGrowingPercent: e.WORKER_HEAP_GROWING_PERCENT,
      maxConcurrentActivities: e.WORKER_MAX_CONCURRENT_ACTIVITIES,
      maxConcurrentLocalActivities: e.WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES,
      // Unset: the SDK's 40, or the cache size if that is smaller (the SDK did this itself before
      // 1.24, and a worker with more workflow tasks than cached runs evicts runs it is working on).
      maxConcurrentWorkflowTasks: e.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS ?? Math.max(2, Math.min(40, e.WORKER_MAX_CACHED_WORKFLOWS)),
    },
  };
}
