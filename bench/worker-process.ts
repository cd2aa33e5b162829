/**
 * A worker in a process of its own, for the benchmarks (its RSS is measured alone) and the
 * fault suite (SIGKILL is real). It builds the worker exactly like src/worker.ts's main(), from
 * the environment, but from a prebuilt workflow bundle: WORKFLOW_BUNDLE_PATH.
 *
 *   WORKFLOW_BUNDLE_PATH=… DATABASE_URL=… TEMPORAL_ADDRESS=… … node bench/child-entry.cjs bench/worker-process.ts
 *
 * Tells its parent (when it has an IPC channel) `{ type: 'ready', pid }` once it polls.
 */
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { createDb } from '../src/db';
import { createLogger } from '../src/logger';
import { resolveKeys } from '../src/temporal/codec';
import { connectWorker } from '../src/temporal/connection';
import { createWorker, limitHeapGrowth } from '../src/worker';
import { serveStats } from './processStats';

async function main() {
  const bundlePath = process.env.WORKFLOW_BUNDLE_PATH;
  if (!bundlePath) throw new Error('WORKFLOW_BUNDLE_PATH is required');
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  // The SDK's own logs: warnings and errors only, as in the tests.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  limitHeapGrowth(config.worker.heapGrowingPercent);
  if (!config.database.url || !config.temporal.address) throw new Error('DATABASE_URL and TEMPORAL_ADDRESS are required');
  const db = createDb({ url: config.database.url, poolMax: config.database.poolMax, queryTimeoutMs: config.database.queryTimeoutMs, log });
  const connection = await connectWorker(config.temporal.connection);
  const worker = await createWorker({ config, db, log, connection, keys: resolveKeys(config, log), workflowBundle: { codePath: bundlePath } });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => worker.shutdown());
  const running = worker.run();
  serveStats(() => {
    // Where the RSS is: V8's heap (the workflows' and the activities' objects) or outside it (the Rust core, buffers).
    const m = process.memoryUsage();
    const mib = (n: number) => Math.round(n / 2 ** 20);
    return { maxCachedWorkflows: worker.options.maxCachedWorkflows, workflowsInCache: worker.getStatus().numCachedWorkflows, heapUsedMiB: mib(m.heapUsed), heapTotalMiB: mib(m.heapTotal), externalMiB: mib(m.external) };
  });
  process.send?.({ type: 'ready', pid: process.pid, maxCachedWorkflows: worker.options.maxCachedWorkflows });
  await running;
  await connection.close();
  await db.destroy();
  process.exit(0);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
