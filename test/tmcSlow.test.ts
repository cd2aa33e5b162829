/**
 * A stored password always reaches TMC, even when TMC is slow and attempts are given up: every
 * committed hash of a TMC user has a notification delivered, pending, or recorded as
 * `tmc_user_not_found` (test/support/invariant.ts).
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { WithStartWorkflowOperation } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTmcUserActivities } from '../src/activities/tmcUsers';
import { hashPassword } from '../src/passwords';
import { TmcClient } from '../src/tmc';
import { setPasswordUpdate, tmcUserWorkflowId } from '../src/workflows/shared';
import type { tmcUserWorkflow } from '../src/workflows/tmcUser';
import { checkNotificationInvariant } from './support/invariant';
import { eventually, startHarness, type Harness } from './support/harness';

let h: Harness;
let nextId = 11_000;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const status = async (upstreamId: number) => (await h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${upstreamId}/status`)).body;
const fetchesOf = (upstreamId: number) => h.tmc.requests.filter((r) => r.method === 'GET' && r.path === `/api/v8/users/${upstreamId}`);

describe('a slow TMC (12 s to answer the user fetch; its own client gives up at 10 s)', () => {
  it('answers create 504 naming TMC within 8 s, aborts the fetch, and stores nothing', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.fetchDelayMs = 12_000;
    try {
      const started = Date.now();
      const res = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: upstreamId, password: 'slow tmc password' });
      const elapsed = Date.now() - started;
      expect(res.status).toBe(504);
      expect(res.body).toEqual({ title: 'Gateway Timeout', message: 'TMC did not answer in time.', source: null, data: null });
      expect(elapsed).toBeLessThan(8_000);
      // The fetch was aborted on our side, not left to run on.
      await eventually(() => fetchesOf(upstreamId).every((r) => r.abandoned));
      // Past the moment TMC would have answered: nothing was committed, and the run ended.
      await sleep(Math.max(0, started + 13_000 - Date.now()));
      const result = await h.client.workflow.getHandle(tmcUserWorkflowId(upstreamId)).result();
      expect(result).toEqual({ outcome: 'not_created' });
      expect(await status(upstreamId)).toMatchObject({ password_set: false });
      expect((await checkNotificationInvariant(h.db, h.client, [upstreamId])).violations).toEqual([]);
    } finally {
      h.tmc.fetchDelayMs = undefined;
    }
  });

  it('answers users-by-upstream-id 504 naming TMC within 8 s', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.fetchDelayMs = 12_000;
    try {
      const started = Date.now();
      const res = await h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${upstreamId}`);
      expect(res.status).toBe(504);
      expect(res.body.message).toBe('TMC did not answer in time.');
      expect(Date.now() - started).toBeLessThan(8_000);
    } finally {
      h.tmc.fetchDelayMs = undefined;
    }
  });

  it('commits nothing after the interactive step gave up by its own timeout (a create without a deadline, as older APIs sent)', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.fetchDelayMs = 12_000;
    try {
      const started = Date.now();
      const start = new WithStartWorkflowOperation<typeof tmcUserWorkflow>('tmcUserWorkflow', {
        workflowId: tmcUserWorkflowId(upstreamId),
        taskQueue: h.config.temporal.taskQueue,
        workflowIdConflictPolicy: 'USE_EXISTING',
        args: [{ upstreamId, notifyRetry: h.config.tmc.notifyRetry }],
      });
      const update = h.client.workflow.executeUpdateWithStart(setPasswordUpdate, { args: [{ passwordHash: await hashPassword('no deadline') }], startWorkflowOperation: start });
      await expect(update).rejects.toThrow();
      const result = await h.client.workflow.getHandle(tmcUserWorkflowId(upstreamId)).result();
      // TMC has answered by now: an attempt still running would have committed.
      await sleep(Math.max(0, started + 13_500 - Date.now()));
      expect(result).toEqual({ outcome: 'not_created' });
      expect(await status(upstreamId)).toMatchObject({ password_set: false });
      expect((await checkNotificationInvariant(h.db, h.client, [upstreamId])).violations).toEqual([]);
    } finally {
      h.tmc.fetchDelayMs = undefined;
    }
  });
});

describe('fencing an abandoned attempt (the activities, against the real database and the fake TMC)', () => {
  const activities = () =>
    createTmcUserActivities({ db: h.db, log: h.log, tmc: new TmcClient({ baseUrl: h.tmc.url, accessToken: 't', ratelimitApiKey: 'k', timeoutMs: 15_000 }) });

  it('rolls back an attempt that reaches its commit after the workflow fenced it', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.fetchDelayMs = 1_500;
    try {
      const acts = activities();
      const attempt = `run-x/${upstreamId}`;
      const running = new MockActivityEnvironment().run(acts.createUserFromTmc, { upstreamId, passwordHash: await hashPassword('late'), attempt });
      running.catch(() => undefined);
      await sleep(300);
      // The workflow gave the attempt up: it fences it and finds nothing committed.
      expect(await new MockActivityEnvironment().run(acts.settleAbandonedAttempt, { upstreamId, attempt })).toBeUndefined();
      await expect(running).rejects.toMatchObject({ type: 'AttemptAbandoned', nonRetryable: true });
      expect(await h.db('users').where({ upstream_id: upstreamId }).first()).toBeUndefined();
    } finally {
      h.tmc.fetchDelayMs = undefined;
    }
  });

  it('finds what an attempt committed before it was fenced, so the workflow can notify TMC', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    const acts = activities();
    const attempt = `run-y/${upstreamId}`;
    const user = await new MockActivityEnvironment().run(acts.createUserFromTmc, { upstreamId, passwordHash: await hashPassword('early'), attempt });
    expect(await new MockActivityEnvironment().run(acts.settleAbandonedAttempt, { upstreamId, attempt })).toEqual(user);
    // Fencing is idempotent (the activity may be retried).
    expect(await new MockActivityEnvironment().run(acts.settleAbandonedAttempt, { upstreamId, attempt })).toEqual(user);
  });

  it('aborts the TMC fetch when the activity is cancelled, and commits nothing', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.fetchDelayMs = 3_000;
    try {
      const env = new MockActivityEnvironment();
      const started = Date.now();
      const running = env.run(activities().createUserFromTmc, { upstreamId, passwordHash: await hashPassword('cancelled'), attempt: `run-z/${upstreamId}` });
      running.catch(() => undefined);
      await sleep(300);
      env.cancel('TIMED_OUT');
      await expect(running).rejects.toBeDefined();
      expect(Date.now() - started).toBeLessThan(2_000);
      await eventually(() => fetchesOf(upstreamId).length === 1 && fetchesOf(upstreamId)[0]!.abandoned);
      await sleep(Math.max(0, started + 3_500 - Date.now()));
      expect(await h.db('users').where({ upstream_id: upstreamId }).first()).toBeUndefined();
    } finally {
      h.tmc.fetchDelayMs = undefined;
    }
  });

  it('answers the fetch with a non-retryable TmcTimeout when the caller\'s deadline leaves no time for TMC', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.fetchDelayMs = 3_000;
    try {
      const started = Date.now();
      const run = new MockActivityEnvironment().run(activities().createUserFromTmc, { upstreamId, passwordHash: 'h', attempt: `run-w/${upstreamId}`, answerBy: Date.now() + 2_500 });
      await expect(run).rejects.toMatchObject({ type: 'TmcTimeout', nonRetryable: true });
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      h.tmc.fetchDelayMs = undefined;
    }
  });

  it('does not blame TMC when too little time is left to call it (an earlier attempt used it up, e.g. on a database outage)', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    const before = fetchesOf(upstreamId).length;
    const run = new MockActivityEnvironment().run(activities().createUserFromTmc, { upstreamId, passwordHash: 'h', attempt: `run-v/${upstreamId}`, answerBy: Date.now() + 1_500 });
    await expect(run).rejects.toMatchObject({ type: 'AttemptAbandoned', nonRetryable: true });
    expect(fetchesOf(upstreamId).length).toBe(before);
  });
});
