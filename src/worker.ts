/**
 * The worker: runs the workflows and their activities on the task queue. Several workers on
 * several machines may share one queue. `npm run start:worker` runs this file.
 */
import path from 'node:path';
import v8 from 'node:v8';
import { Runtime, Worker, type NativeConnection, type WorkflowBundleOption } from '@temporalio/worker';
import { createActivities } from './activities';
import { loadConfig, type Config } from './config';
import { createDb, migrate, type Db } from './db';
import { createLogger, type Logger } from './logger';
import { createMailer } from './mail';
import { serveMetrics } from './metrics';
import { dataConverter, resolveKeys, type EncryptionKey } from './temporal/codec';
import { connectWorker } from './temporal/connection';
import { ensureSearchAttributes } from './temporal/searchAttributes';
import { requestIdActivityInterceptor } from './temporal/interceptors';
import { MoocfiClient } from './moocfi';
import { TmcClient } from './tmc';

export interface WorkerDeps {
  config: Config;
  db: Db;
  log: Logger;
  connection: NativeConnection;
  keys: EncryptionKey[];
  /** A prebuilt workflow bundle (tests, benchmarks); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkflowBundleOption;
}

export async function createWorker({ config, db, log, connection, keys, workflowBundle }: WorkerDeps): Promise<Worker> {
  const tmc = new TmcClient(config.tmc);
  const mailer = createMailer(config.mail);
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    dataConverter: dataConverter(keys),
    // On SIGTERM, running activities get this long to finish before they are cancelled.
    shutdownGraceTime: '20s',
    stickyQueueScheduleToStartTimeout: config.worker.stickyQueueTimeoutMs,
    maxCachedWorkflows: config.worker.maxCachedWorkflows,
    maxConcurrentActivityTaskExecutions: config.worker.maxConcurrentActivities,
    maxConcurrentLocalActivityExecutions: config.worker.maxConcurrentLocalActivities,
    maxConcurrentWorkflowTaskExecutions: config.worker.maxConcurrentWorkflowTasks,
    interceptors: { workflowModules: [workflowInterceptorsPath()], activity: [requestIdActivityInterceptor] },
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: workflowsPath() }),
    activities: createActivities({ db, tmc, log, mailer, publicBaseUrl: config.signup.publicBaseUrl, moocfi: new MoocfiClient(config.moocfi, (reason) => log.warn({ reason }, 'mooc.fi id lookup failed; a new id is used')) }),
  });
  // The SMTP connection pool belongs to this worker: close it once the worker has stopped, or
  // its idle connections keep the SMTP server (and this process) waiting for their timeout.
  const run = worker.run.bind(worker);
  worker.run = () => run().finally(() => mailer.close());
  return worker;
}

/**
 * Node options every production worker process starts with (`npm run start:worker`, the compose
 * file's worker): V8's young generation at most 4 MiB per semi-space instead of 16, in each of
 * the process's heaps (its main thread and the SDK's workflow thread). With
 * WORKER_HEAP_GROWING_PERCENT they kept a worker at 241–248 MiB RSS right after a burst of 10 000
 * signups, against 292–296 MiB without, for ~10 % more CPU per signup (docs/benchmarks.md,
 * section 4). A command-line option (or NODE_OPTIONS), as V8 sizes the young generation when it
 * creates a heap; test/workerProcess.test.ts checks that the commands carry it, and the worker
 * warns at start when it is missing.
 */
export const WORKER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/**
 * Which of WORKER_NODE_FLAGS this process did not start with, on its command line or in
 * NODE_OPTIONS. Empty when all are there.
 */
export function missingWorkerNodeFlags(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)]);
  return WORKER_NODE_FLAGS.filter((flag) => !given.has(flag));
}

/**
 * Sets V8's heap growing factor for this whole process (every isolate, the SDK's workflow thread
 * included): after a full collection a heap may grow to (1 + percent/100) × what survived, where
 * V8 would choose up to 4× during a burst and give the rest back only once the process idles.
 * 0 leaves V8's own choice. Call it once, before the worker is created; V8 reads the flag at
 * each collection, so it holds from the next one on.
 */
export function limitHeapGrowth(percent: number): void {
  if (percent > 0) v8.setFlagsFromString(`--heap-growing-percent=${Math.trunc(percent)}`);
}

/** The workflows' entry file, as .ts from source (tsx, vitest) or .js once compiled. */
export function workflowsPath(): string {
  return path.join(__dirname, 'workflows', `index${path.extname(__filename)}`);
}

/** The workflow interceptors module, bundled with the workflows. */
export function workflowInterceptorsPath(): string {
  return path.join(__dirname, 'workflows', `interceptors${path.extname(__filename)}`);
}

/**
 * Sends the SDK's own logs (worker state, activity failures) through pino. Once per process.
 * `handleSignals: false` keeps the SDK from draining workers on SIGINT/SIGTERM by itself, for a
 * process that stops its parts in its own order (npm start: the API drains first).
 */
export function installRuntimeLogging(log: Logger, sdkMetricsAddress?: string, { handleSignals = true } = {}): void {
  const sdk = log.child({ component: 'temporal-sdk' });
  const at = (level: 'trace' | 'debug' | 'info' | 'warn' | 'error') => (message: string, meta?: Record<string, unknown>) => sdk[level](meta ?? {}, message);
  Runtime.install({
    ...(handleSignals ? {} : { shutdownSignals: [] }),
    // The SDK's own metrics (task latencies, poller counts, …) for Prometheus.
    ...(sdkMetricsAddress ? { telemetryOptions: { metrics: { prometheus: { bindAddress: sdkMetricsAddress } } } } : {}),
    logger: {
      log: (level, message, meta) => at(level.toLowerCase() as 'info')(message, meta),
      trace: at('trace'),
      debug: at('debug'),
      info: at('info'),
      warn: at('warn'),
      error: at('error'),
    },
  });
}

async function main() {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  installRuntimeLogging(log, config.worker.sdkMetricsAddress);
  limitHeapGrowth(config.worker.heapGrowingPercent);
  const missingFlags = missingWorkerNodeFlags();
  if (missingFlags.length) log.warn({ missingFlags }, `worker started without ${missingFlags.join(' ')}: it runs, with more memory after a burst of work; start it as npm run start:worker does (node ${WORKER_NODE_FLAGS.join(' ')} dist/worker.js)`);
  if (!config.database.url) throw new Error('DATABASE_URL is required for the worker');
  const metricsServer = await serveMetrics(config.worker.metricsPort);
  if (!config.temporal.address) throw new Error('TEMPORAL_ADDRESS (or a TEMPORAL_CONFIG_FILE profile with an address) is required for the worker');
  const db = createDb({ url: config.database.url, poolMax: config.database.poolMax, queryTimeoutMs: config.database.queryTimeoutMs, log });
  await migrate(db, { defaultTenant: config.signup.defaultTenant });
  // Best effort: without operator rights (Temporal Cloud) an operator registers it; the API
  // answers 503 naming it until then.
  await ensureSearchAttributes(config.temporal.connection).then(
    (added) => added.length && log.info({ added }, 'registered search attributes'),
    (err: Error) => log.warn({ err: { message: err.message } }, `could not check or register search attribute SignupState: ${err.message}`),
  );
  const connection = await connectWorker(config.temporal.connection);
  const worker = await createWorker({ config, db, log, connection, keys: resolveKeys(config, log) });
  const { maxCachedWorkflows, heapGrowingPercent } = config.worker;
  log.info({ taskQueue: config.temporal.taskQueue, namespace: config.temporal.namespace, maxCachedWorkflows, heapGrowingPercent, nodeFlags: process.execArgv }, 'worker started');
  // Worker.run() resolves after SIGINT/SIGTERM, once in-flight tasks have drained.
  await worker.run();
  await connection.close();
  await db.destroy();
  metricsServer.close();
  log.info('worker stopped');
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
