/**
 * TMC down: while creates are answered and for the rest of the outage window, TMC cannot take
 * the "password managed here" notification. Once it is back, every user's notification is
 * delivered, once per user on TMC's side, and exactly one user row exists per upstream_id.
 *
 * What is injected: creates need TMC's user fetch, so TMC cannot be down for them. From the
 * start of the outage the fake TMC answers the notification endpoint with 503 (the fetch still
 * works) while the creates run; as soon as the last create is answered, TMC goes down entirely
 * (its server closes: connections are refused, ECONNREFUSED) for the rest of the window.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Stack } from '../../bench/stack';
import { eventually, notificationInvariant, pool, report, scale, sleep, startFaultStack, tally } from './support';

const CREATES = scale(200, 50);
const OUTAGE_MS = scale(60_000, 15_000);

let stack: Stack;
beforeAll(async () => {
  stack = await startFaultStack();
});
afterAll(async () => {
  await stack?.close();
});

it(`delivers every notification once after TMC refuses them for ${OUTAGE_MS / 1000} s during ${CREATES} creates`, async () => {
  const ids = Array.from({ length: CREATES }, (_, i) => 70_000 + i);
  for (const id of ids) stack.tmc.addUser({ id });

  const outageStarted = Date.now();
  stack.tmc.notifyStatus = 503;
  // A create that is not answered 200 is sent again a second later, as TMC would.
  const firstAnswers: number[] = [];
  const answers = await pool(ids, 8, async (id) => {
    for (let attempt = 1; ; attempt++) {
      const res = await stack.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: id, password: `password of ${id}` });
      if (attempt === 1) firstAnswers.push(res.status);
      if (res.status === 200 || attempt === 10) return { id, status: res.status, attempts: attempt, userId: res.body?.user?.id as string | undefined };
      await sleep(1_000);
    }
  });
  const createsAnsweredMs = Date.now() - outageStarted;
  const attemptsWhile503 = ids.reduce((n, id) => n + stack.tmc.notificationAttempts(id).length, 0);

  // The rest of the window (at least 5 s): TMC is gone, connections are refused.
  await stack.tmc.goDown();
  const refusedFor = Math.max(OUTAGE_MS - (Date.now() - outageStarted), 5_000);
  await sleep(refusedFor);
  stack.tmc.notifyStatus = undefined;
  await stack.tmc.comeBack();
  const backAt = Date.now();

  const delivered = () => ids.filter((id) => stack.tmc.notificationsFor(id).length > 0).length;
  await eventually(() => delivered() === CREATES, { timeoutMs: 120_000, what: 'every notification delivered' });
  const allDeliveredMs = Date.now() - backAt;
  // Runs linger 2 s for late creates; wait that out so a duplicate would have shown.
  await sleep(4_000);

  const perId = ids.map((id) => stack.tmc.notificationsFor(id).length);
  const userRows = await stack.db('users').whereIn('upstream_id', ids).groupBy('upstream_id').select('upstream_id').count<{ upstream_id: number; count: string }[]>('* as count');
  const outcomes = await stack.db('tmc_password_notifications').whereIn('upstream_id', ids).select('upstream_id', 'outcome', 'deliveries');

  report('TMC down', [
    `notification endpoint answered 503 for ${(createsAnsweredMs / 1000).toFixed(1)} s while ${CREATES} creates (8 at a time) were answered`,
    `then TMC's server closed (connections refused) for ${(refusedFor / 1000).toFixed(1)} s; outage ${((backAt - outageStarted) / 1000).toFixed(1)} s in all`,
    'notification retry policy of the stack: initial 200 ms, max 1 s (TMC_NOTIFY_INITIAL_INTERVAL / TMC_NOTIFY_MAX_INTERVAL)',
  ], {
    'create answers, first try': tally(firstAnswers),
    'create answers, last try': tally(answers.map((a) => a.status)),
    'creates that needed more than one try': answers.filter((a) => a.attempts > 1).length,
    'notification attempts refused with 503 while creates ran': attemptsWhile503,
    'notifications delivered (TMC answered 200), per user': tally(perId),
    'time from TMC back to all delivered (s)': (allDeliveredMs / 1000).toFixed(1),
    'user rows per upstream_id': tally(userRows.map((r) => Number(r.count))),
    'recorded outcomes': tally(outcomes.map((o) => `${o.outcome}×${o.deliveries}`)),
  });

  expect(answers.filter((a) => a.status !== 200)).toEqual([]);
  expect(perId.every((n) => n === 1)).toBe(true);
  expect(userRows).toHaveLength(CREATES);
  expect(userRows.every((r) => Number(r.count) === 1)).toBe(true);
  // Each notification went to the user the create answered with.
  for (const a of answers) {
    expect(stack.tmc.notificationsFor(a.id)[0]?.body).toEqual({ courses_mooc_fi_user_id: a.userId });
  }
  expect(outcomes).toHaveLength(CREATES);
  expect(outcomes.every((o) => o.outcome === 'delivered' && Number(o.deliveries) === 1)).toBe(true);
});

it('leaves every stored TMC password with a notification delivered, pending or recorded', async () => {
  expect(await notificationInvariant(stack, 'TMC down')).toEqual([]);
});
