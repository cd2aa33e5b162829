/**
 * Temporal's limits per workflow run: with TMC refusing the notification, a user's run stays
 * open and takes every create (TMC calls create on every login). The server caps the updates one
 * run accepts (history.maxTotalUpdates, 2 000 by default; lowered to 20 here, so it shows in
 * seconds). No create may be refused or lost: the run continues as new before the cap, carrying
 * the user and the pending notification.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTemporalDevServer, type RunningDevServer } from '../src/dev/temporalServer';
import { tmcUserWorkflowId } from '../src/workflows/shared';
import { checkNotificationInvariant } from './support/invariant';
import { eventually, startHarness, type Harness } from './support/harness';

const CAP = 20;
let temporal: RunningDevServer;
let h: Harness;
beforeAll(async () => {
  temporal = await startTemporalDevServer({ dynamicConfig: { 'history.maxTotalUpdates': CAP } });
  h = await startHarness({ temporalAddress: temporal.address, env: { TMC_UPDATES_PER_RUN: '10' } });
});
afterAll(async () => {
  await h?.close();
  await temporal?.stop();
});

const create = (upstream_id: number, password: string) => h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id, password });
const authenticate = (user_id: string, password: string) => h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id, password });

async function runsOf(upstreamId: number) {
  const runs = [];
  for await (const wf of h.client.workflow.list({ query: `WorkflowId = "${tmcUserWorkflowId(upstreamId)}"` })) runs.push(wf);
  return runs;
}

describe(`a user's workflow under the server's cap of ${CAP} updates per run`, () => {
  it('takes 3 × the cap of creates while TMC refuses the notification, continuing as new, and loses none', async () => {
    const upstreamId = 13_000;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.notifyStatus = 503;
    const statuses: number[] = [];
    let userId = '';
    // One at a time, as TMC's logins of one user come, then bursts of 5 at once.
    for (let i = 0; i < CAP * 2; i++) {
      const res = await create(upstreamId, `password ${i}`);
      statuses.push(res.status);
      if (res.status === 200) userId = res.body.user.id;
    }
    for (let burst = 0; burst < 4; burst++) {
      const answers = await Promise.all(Array.from({ length: 5 }, (_, j) => create(upstreamId, `burst ${burst} ${j}`)));
      for (const a of answers) statuses.push(a.status);
    }
    const last = await create(upstreamId, 'the last password');
    statuses.push(last.status);
    const failures = h.logLines.filter((l) => l.includes('request failed')).slice(0, 3);
    expect(statuses, failures.join('\n')).toEqual(statuses.map(() => 200));
    expect(last.body.user.id).toBe(userId);
    expect((await authenticate(userId, 'the last password')).body).toBe(true);
    expect(await h.db('users').where({ upstream_id: upstreamId })).toHaveLength(1);

    const runs = await runsOf(upstreamId);
    expect(runs.length).toBeGreaterThanOrEqual(3);
    expect(runs.filter((r) => r.status.name === 'CONTINUED_AS_NEW').length).toBe(runs.length - 1);

    // The notification was pending all along; once TMC takes it, it is delivered and recorded.
    h.tmc.notifyStatus = undefined;
    await eventually(() => h.tmc.notificationsFor(upstreamId).length >= 1, { timeoutMs: 30_000 });
    await eventually(async () => (await h.db('tmc_password_notifications').where({ user_id: userId }).first())?.outcome === 'delivered');
    expect(h.tmc.notificationsFor(upstreamId).every((n) => (n.body as { courses_mooc_fi_user_id: string }).courses_mooc_fi_user_id === userId)).toBe(true);
    expect((await checkNotificationInvariant(h.db, h.client, [upstreamId])).violations).toEqual([]);
  });

  it('keeps taking creates after the notification was delivered, in a run that lingers', async () => {
    const upstreamId = 13_001;
    h.tmc.addUser({ id: upstreamId });
    const statuses: number[] = [];
    for (let i = 0; i < CAP + 5; i++) statuses.push((await create(upstreamId, `after delivery ${i}`)).status);
    expect(statuses).toEqual(statuses.map(() => 200));
    await eventually(() => h.tmc.notificationsFor(upstreamId).length >= 1);
    const result = await eventually(async () => {
      const runs = await runsOf(upstreamId);
      return runs.every((r) => r.status.name !== 'RUNNING') ? runs : undefined;
    }, { timeoutMs: 30_000 });
    expect(result.some((r) => r.status.name === 'COMPLETED')).toBe(true);
  });

  it('answers every create of a burst larger than the run has room for (the server refuses the excess; the API retries it on the next run)', async () => {
    const upstreamId = 13_002;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.notifyStatus = 503;
    try {
      const answers = await Promise.all(Array.from({ length: CAP + 10 }, (_, i) => create(upstreamId, `big burst ${i}`)));
      const failures = h.logLines.filter((l) => l.includes('request failed')).slice(0, 3);
      expect(answers.map((a) => a.status), failures.join('\n')).toEqual(answers.map(() => 200));
      expect(new Set(answers.map((a) => a.body.user.id)).size).toBe(1);
    } finally {
      h.tmc.notifyStatus = undefined;
    }
    await eventually(() => h.tmc.notificationsFor(upstreamId).length >= 1, { timeoutMs: 30_000 });
  });
});
