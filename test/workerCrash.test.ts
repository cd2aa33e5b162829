/**
 * A worker SIGKILLed while workflows wait, then started again, as a crash or a careless deploy
 * does. The waiting workflows' next tasks were bound to the dead worker's sticky queue; they
 * must reach the new worker quickly enough that the first verification click, resend and create
 * answer within the interactive deadline. The times are printed; docs/benchmarks.md has them.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startHarness, type Harness } from './support/harness';
import { startWorkerProcess } from './support/workerProcess';

let h: Harness;
const workers: ChildProcess[] = [];
const json = { accept: 'application/json' };

/** A worker process with the harness's environment; every one is killed after the file. */
async function startWorker(): Promise<ChildProcess> {
  const { child } = await startWorkerProcess({ ...h.env, WORKER_METRICS_PORT: '0', TEMPORAL_SDK_METRICS_ADDRESS: '' });
  workers.push(child);
  return child;
}

async function timed<T>(call: () => Promise<T>): Promise<{ result: T; ms: number }> {
  const start = performance.now();
  const result = await call();
  return { result, ms: Math.round(performance.now() - start) };
}

beforeAll(async () => {
  h = await startHarness({ worker: false, env: { SIGNUP_RESEND_INTERVAL: '1s' } });
}, 120_000);
afterAll(async () => {
  for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
  await h?.close();
});

describe('after a worker is SIGKILLed and another starts', () => {
  it('the first click, resend and create answer within the deadline: 200, 202, 200', async () => {
    const first = await startWorker();
    const clicker = `crash-click-${Date.now()}@example.test`;
    const resender = `crash-resend-${Date.now()}@example.test`;
    for (const address of [clicker, resender]) {
      const res = await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: address, display_name: 'Crash Test', password: 'crash test password' }, headers: json });
      expect(res.status).toBe(202);
    }
    await eventually(() => h.mail.latestLink(clicker) !== undefined && h.mail.latestLink(resender) !== undefined, { what: 'both verification mails' });
    // A TMC user whose notification keeps failing: its run stays open, waiting on a retry.
    h.tmc.addUser({ id: 7501 });
    h.tmc.notifyStatus = 503;
    const created = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 7501, password: 'first password' });
    expect(created.status).toBe(200);
    await eventually(() => h.tmc.notificationAttempts(7501).length >= 1, { what: 'a failed notification attempt' });

    first.kill('SIGKILL');
    await once(first, 'exit');
    await startWorker();

    // Each is the first call to its workflow since the crash.
    // The click: the link's page confirms with the password chosen at signup.
    const token = new URL(h.mail.latestLink(clicker)!).searchParams.get('token')!;
    const [click, resend, create] = await Promise.all([
      timed(() => h.request('POST', '/api/v0/signups/verify', { body: { token, password: 'crash test password' }, headers: json })),
      timed(() => h.request('POST', '/api/v0/signups/resend', { body: { tenant: 'default', email: resender }, headers: json })),
      timed(() => h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 7501, password: 'second password' })),
    ]);
    console.log(`after a worker SIGKILL and restart: click ${click.ms} ms (${click.result.status}), resend ${resend.ms} ms (${resend.result.status}), create ${create.ms} ms (${create.result.status})`);

    expect(click.result.status).toBe(200);
    expect(click.result.body).toMatchObject({ status: 'active' });
    expect(resend.result.status).toBe(202);
    expect(create.result.status).toBe(200);
    expect(create.result.body).toMatchObject({ password_set: true });
    h.tmc.notifyStatus = undefined;
  }, 240_000);
});
