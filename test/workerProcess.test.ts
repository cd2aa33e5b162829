/**
 * The worker as operators run it: its own process (`src/worker.ts`), with its /metrics endpoint
 * and the SDK's Prometheus endpoint, stopped with SIGTERM while an activity is in flight. The
 * activity finishes before the process exits, so TMC is called once and the run goes on with the
 * next worker; nothing is retried or lost.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../src/config';
import { freePort } from '../src/dev/ports';
import { resolveKeys } from '../src/temporal/codec';
import { connectWorker } from '../src/temporal/connection';
import { createWorker } from '../src/worker';
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

  it('bounds its workflow cache with WORKER_MAX_CACHED_WORKFLOWS, 100 by default (not the SDK\'s heap-sized default)', async () => {
    const connection = await connectWorker(h.config.temporal.connection);
    try {
      const cacheOf = async (env: Record<string, string>) => {
        const config = loadConfig({ ...h.env, ...env });
        const w = await createWorker({ config, db: h.db, log: h.log, connection, keys: resolveKeys(config, h.log), workflowBundle: { codePath: inject('workflowBundlePath') } });
        const running = w.run();
        w.shutdown();
        await running;
        return w.options.maxCachedWorkflows;
      };
      expect(await cacheOf({ WORKER_MAX_CACHED_WORKFLOWS: '50' })).toBe(50);
      expect(await cacheOf({})).toBe(100);
      expect(() => loadConfig({ ...h.env, WORKER_MAX_CACHED_WORKFLOWS: '0' })).toThrow(/WORKER_MAX_CACHED_WORKFLOWS/);
    } finally {
      await connection.close();
    }
  }, 60_000);
});
