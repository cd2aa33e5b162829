/**
 * The worker as operators run it: its own process (`src/worker.ts`), with its /metrics endpoint
 * and the SDK's Prometheus endpoint, stopped with SIGTERM while an activity is in flight. The
 * activity finishes before the process exits, so TMC is called once and the run goes on with the
 * next worker; nothing is retried or lost.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { loadConfig } from '../src/config';
import { freePort } from '../src/dev/ports';
import { resolveKeys } from '../src/temporal/codec';
import { connectWorker } from '../src/temporal/connection';
import { createWorker, limitHeapGrowth, missingWorkerNodeFlags, WORKER_NODE_FLAGS } from '../src/worker';
import { tmcUserWorkflowId } from '../src/workflows/shared';
import { eventually, startHarness, type Harness } from './support/harness';
import { startWorkerProcess } from './support/workerProcess';

let h: Harness;
let worker: ChildProcess;
let output: () => string;
let metricsUrl: string;
let sdkMetricsUrl: string;

beforeAll(async () => {
  h = await startHarness({ worker: false });
  const [metricsPort, sdkPort] = [await freePort(), await freePort()];
  metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  sdkMetricsUrl = `http://127.0.0.1:${sdkPort}/metrics`;
  ({ child: worker, output } = await startWorkerProcess({ ...h.env, WORKER_METRICS_PORT: String(metricsPort), TEMPORAL_SDK_METRICS_ADDRESS: `127.0.0.1:${sdkPort}` }));
}, 120_000);
afterAll(async () => {
  if (worker && worker.exitCode === null) worker.kill('SIGKILL');
  await h?.close();
});

describe('the worker process', () => {
  it('serves its metrics and the SDK’s, and on SIGTERM finishes the activity in flight before it exits', async () => {
    h.tmc.addUser({ id: 7301 });
    let release!: () => void;
    h.tmc.holdNotifications = new Promise<void>((r) => (release = r));

    const created = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 7301, password: 'drained password' });
    expect(created.status).toBe(200);
    // The notification activity is running in the worker process, waiting for TMC's answer.
    await eventually(() => h.tmc.notificationAttempts(7301).length === 1, { what: 'the notification call' });

    const metrics = await (await fetch(metricsUrl)).text();
    expect(metrics).toMatch(/^accounts_users_created_total 1$/m);
    expect(metrics).toContain('process_cpu_seconds_total');
    const sdkMetrics = await (await fetch(sdkMetricsUrl)).text();
    expect(sdkMetrics).toMatch(/^temporal_\w+/m);

    const exited = once(worker, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    worker.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1_500));
    expect(worker.exitCode, 'the worker must wait for its activity').toBeNull();
    release();
    h.tmc.holdNotifications = undefined;
    const [code] = await exited;
    expect(code, output().slice(-2000)).toBe(0);
    expect(output()).toContain('"worker stopped"');

    // The next worker carries the run on: the outcome is recorded, and TMC was called once.
    await h.startWorker();
    const result = await h.client.workflow.getHandle(tmcUserWorkflowId(7301)).result();
    expect(result).toMatchObject({ outcome: 'created', notification: 'delivered' });
    expect(h.tmc.notificationAttempts(7301)).toHaveLength(1);
    expect(h.tmc.notificationsFor(7301)).toHaveLength(1);
    const recorded = await h.db('tmc_password_notifications').where({ upstream_id: 7301 });
    expect(recorded).toHaveLength(1);
  }, 120_000);

  /** The options a worker built from this environment runs with (it is started and stopped at once). */
  async function workerOptionsFor(env: Record<string, string>) {
    const connection = await connectWorker(h.config.temporal.connection);
    try {
      const config = loadConfig({ ...h.env, ...env });
      const w = await createWorker({ config, db: h.db, log: h.log, connection, keys: resolveKeys(config, h.log), workflowBundle: { codePath: inject('workflowBundlePath') } });
      const running = w.run();
      w.shutdown();
      await running;
      return w.options;
    } finally {
      await connection.close();
    }
  }

  it('bounds its workflow cache with WORKER_MAX_CACHED_WORKFLOWS, 100 by default (not the SDK\'s heap-sized default)', async () => {
    const cacheOf = async (env: Record<string, string>) => (await workerOptionsFor(env)).maxCachedWorkflows;
    expect(await cacheOf({ WORKER_MAX_CACHED_WORKFLOWS: '50' })).toBe(50);
    expect(await cacheOf({})).toBe(100);
    expect(() => loadConfig({ ...h.env, WORKER_MAX_CACHED_WORKFLOWS: '0' })).toThrow(/WORKER_MAX_CACHED_WORKFLOWS/);
  }, 60_000);

  it('takes its concurrent task limits from WORKER_MAX_CONCURRENT_*, the SDK\'s own by default', async () => {
    const slotsOf = async (env: Record<string, string>) => {
      const tuner = (await workerOptionsFor(env)).tuner as unknown as Record<string, { numSlots: number }>;
      return [tuner.activityTaskSlotSupplier!.numSlots, tuner.localActivityTaskSlotSupplier!.numSlots, tuner.workflowTaskSlotSupplier!.numSlots];
    };
    expect(await slotsOf({ WORKER_MAX_CONCURRENT_ACTIVITIES: '7', WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES: '8', WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '9' })).toEqual([7, 8, 9]);
    expect(await slotsOf({})).toEqual([100, 100, 40]);
    expect(() => loadConfig({ ...h.env, WORKER_MAX_CONCURRENT_ACTIVITIES: '0' })).toThrow(/WORKER_MAX_CONCURRENT_ACTIVITIES/);
  }, 60_000);

  it('starts with WORKER_NODE_FLAGS in every production command (npm run start:worker, the compose file)', () => {
    const root = path.join(__dirname, '..');
    const startWorker = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).scripts['start:worker'] as string;
    expect(startWorker).toBe(`node ${WORKER_NODE_FLAGS.join(' ')} dist/worker.js`);
    const compose = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
    expect(compose).toContain(`command: ${JSON.stringify(['node', ...WORKER_NODE_FLAGS, 'dist/worker.js']).replaceAll(',', ', ')}`);
  });

  it('limits its heap growth with WORKER_HEAP_GROWING_PERCENT, 20 by default, and says so when it starts', () => {
    expect(loadConfig(h.env).worker.heapGrowingPercent).toBe(20);
    expect(loadConfig({ ...h.env, WORKER_HEAP_GROWING_PERCENT: '0' }).worker.heapGrowingPercent).toBe(0);
    expect(() => loadConfig({ ...h.env, WORKER_HEAP_GROWING_PERCENT: '-5' })).toThrow(/WORKER_HEAP_GROWING_PERCENT/);
    const setFlags = vi.spyOn(v8, 'setFlagsFromString').mockImplementation(() => undefined);
    try {
      limitHeapGrowth(20);
      limitHeapGrowth(0); // V8's own factor: nothing set
      expect(setFlags.mock.calls).toEqual([['--heap-growing-percent=20']]);
    } finally {
      setFlags.mockRestore();
    }
    // The worker process of the first test logged its settings and Node options when it started,
    // and did not warn about missing ones.
    const started = output().split('\n').find((line) => line.includes('"worker started"'));
    expect(JSON.parse(started!)).toMatchObject({ heapGrowingPercent: 20, nodeFlags: expect.arrayContaining([...WORKER_NODE_FLAGS]) });
    expect(output()).not.toContain('worker started without');
  });

  it('names the Node options it was started without, from its command line and NODE_OPTIONS', () => {
    expect(missingWorkerNodeFlags(['--require', 'tsx/cjs'], '')).toEqual([...WORKER_NODE_FLAGS]);
    expect(missingWorkerNodeFlags([...WORKER_NODE_FLAGS], '')).toEqual([]);
    expect(missingWorkerNodeFlags([], ` ${WORKER_NODE_FLAGS.join(' ')} --enable-source-maps`)).toEqual([]);
  });

  it('refuses a workflow-task limit under 2 or over the cache size, and keeps an unset one within the cache', () => {
    expect(() => loadConfig({ ...h.env, WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '1' })).toThrow(/WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: must be 2 or more/);
    expect(() => loadConfig({ ...h.env, WORKER_MAX_CACHED_WORKFLOWS: '50', WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '51' })).toThrow(/at most WORKER_MAX_CACHED_WORKFLOWS \(50\)/);
    expect(loadConfig({ ...h.env, WORKER_MAX_CACHED_WORKFLOWS: '50', WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '50' }).worker.maxConcurrentWorkflowTasks).toBe(50);
    // Unset, it follows a cache smaller than the SDK's 40.
    expect(loadConfig({ ...h.env, WORKER_MAX_CACHED_WORKFLOWS: '20' }).worker.maxConcurrentWorkflowTasks).toBe(20);
    expect(loadConfig(h.env).worker.maxConcurrentWorkflowTasks).toBe(40);
  });
});
