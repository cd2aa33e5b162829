/**
 * Worker killed: the worker (a child process, bench/worker-process.ts) gets SIGKILL every few
 * seconds while signups go through the whole flow (POST, mail over SMTP, GET the link), and a
 * new worker is started after each kill. Every signup ends active; none is duplicated or lost.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pathOf, type Stack } from '../../bench/stack';
import { eventually, FULL, pool, report, scale, sleep, startFaultStack, tally } from './support';

const SIGNUPS = scale(200, 30);
/**
 * Signups start no faster than this, so the flows span many kills (a kill comes every 2–4 s
 * plus a worker start-up, ~4–7 s). The reduced run's 30 signups could otherwise finish in ~10 s,
 * between two kills (seen once in CI: one kill in all); its 30 starts now take 36 s. The full
 * run's 200 unpaced signups finished in 92 s once the mail became a local activity, with 20
 * kills, the bare minimum; 200 starts 700 ms apart take 140 s.
 */
const START_EVERY_MS = scale(700, 1_200);
const MIN_KILLS = scale(20, 3);
/** Killing stops after this long even if signups are still going, so the case ends. */
const KILLING_AT_MOST_MS = scale(300_000, 120_000);

let stack: Stack;
beforeAll(async () => {
  stack = await startFaultStack({ env: { SIGNUP_RESEND_INTERVAL: '1s' } });
});
afterAll(async () => {
  await stack?.close();
});

it(`completes ${SIGNUPS} signups while the worker is SIGKILLed every few seconds`, async () => {
  const run = randomUUID().slice(0, 8);
  const emails = Array.from({ length: SIGNUPS }, (_, i) => `killed-${run}-${i}@faults.invalid`);
  const answers: Record<string, number> = {};
  let done = 0;
  let stopKilling = false;

  // The killer: a worker lives 2–4 s after it is ready, then SIGKILL, then a new one.
  const kills: number[] = [];
  const killer = (async () => {
    const started = Date.now();
    while (!stopKilling && Date.now() - started < KILLING_AT_MOST_MS) {
      await sleep(2_000 + Math.random() * 2_000);
      if (stopKilling) break;
      const pid = stack.worker?.pid;
      await stack.stopWorker('SIGKILL');
      if (pid) kills.push(pid);
      await stack.startWorker();
    }
  })();

  const perEmail = new Map<string, string[]>();
  const note = (what: string, email?: string) => {
    answers[what] = (answers[what] ?? 0) + 1;
    if (email) perEmail.set(email, [...(perEmail.get(email) ?? []), what]);
  };
  const flow = async (email: string) => {
    const posted = await stack.request('POST', '/api/v0/signups', { body: { tenant: 'default', email, display_name: 'Killed', password: 'password of a killed worker' } });
    note(`POST ${posted.status}`, email);
    if (posted.status !== 202) throw new Error(`signup of ${email} answered ${posted.status} ${posted.text}`);
    // A mail can go out twice (the worker died between the mail and its record, and the send
    // ran again); every link of that send works. A 410 would mean an older link was taken
    // away: counted, and asserted to be none, but the flow then takes the newer link.
    for (let attempt = 1; ; attempt++) {
      const seen = stack.mails.count(email);
      const link = await stack.mails.waitFor(email, Math.max(seen, 1), 300_000);
      const res = await stack.request('POST', '/api/v0/signups/verify', { body: { token: new URL(link).searchParams.get('token'), password: 'password of a killed worker' }, headers: { accept: 'application/json' } });
      note(`CONFIRM ${res.status}${res.body?.status ? ` ${res.body.status}` : ''}`, email);
      if (res.status === 200 || res.status === 202) break;
      if (res.status !== 410 || attempt > 20) throw new Error(`verify of ${email} answered ${res.status} ${res.text}`);
      // Wait for a newer mail, or ask for one if none comes.
      await eventually(() => stack.mails.count(email) > seen, { timeoutMs: 10_000 }).catch(async () => {
        note('resend requested');
        await stack.request('POST', '/api/v0/signups/resend', { body: { tenant: 'default', email } });
      });
    }
    done++;
  };

  const started = Date.now();
  const flowErrors: string[] = [];
  await pool(emails, scale(10, 6), async (email, i) => {
    await sleep(Math.max(0, started + i * START_EVERY_MS - Date.now()));
    await flow(email).catch((e: Error) => void flowErrors.push(`${email}: ${e.message}`));
  });
  const flowsMs = Date.now() - started;
  // Wait for every signup to be active (a 202 "activating" finishes in the workflow), then stop.
  // (Waited for, not asserted here: the report below must print either way.)
  const identifiers = emails.map((e) => e.toLowerCase());
  const waitedFor: string[] = [];
  await eventually(
    async () => {
      const active = await stack.db('signups').whereIn('identifier', identifiers).where({ state: 'active' }).count<{ count: string }[]>('* as count');
      return Number(active[0]!.count) === SIGNUPS;
    },
    { timeoutMs: scale(180_000, 120_000), intervalMs: 1_000, what: 'every signup active' },
  ).catch((e: Error) => waitedFor.push(e.message));
  stopKilling = true;
  await killer;
  await stack.startWorker();
  const allActiveMs = Date.now() - started;

  const signups = await stack.db('signups').whereIn('identifier', identifiers).select('identifier', 'state', 'user_id', 'workflow_id', 'emails_sent');
  const stuck = await Promise.all(
    signups.filter((r) => r.state !== 'active').map(async (r) => {
      const d = await stack.client.workflow.getHandle(r.workflow_id).describe().catch((e: Error) => ({ status: { name: e.message } }) as never);
      return `${r.identifier}: row ${r.state}, emails_sent ${r.emails_sent}, mails captured ${stack.mails.count(r.identifier)}, workflow ${d.status.name}; answers ${(perEmail.get(r.identifier) ?? []).join(', ')}`;
    }),
  );
  const users = await stack.db('users').whereIn('identifier', identifiers).select('id', 'identifier', 'status');
  const completed = await stack.db('audit_events').whereIn('user_id', users.map((u) => u.id)).where({ event_type: 'signup_completed' }).select('user_id');
  const passwords = await stack.db('user_passwords').whereIn('user_id', users.map((u) => u.id)).count<{ count: string }[]>('* as count');
  const results = await pool(signups, 16, async (s) => (s.state === 'active' ? stack.client.workflow.getHandle(s.workflow_id).result() : { outcome: `(not awaited: ${s.state})` }));
  const mailsPerSignup = tally(emails.map((e) => stack.mails.count(e)));

  report('Worker killed', [
    `SIGKILL to the worker process ${kills.length} times (each worker lived 2–4 s after it was ready), a new worker started after each`,
    `${SIGNUPS} signups through the whole flow, ${scale(10, 6)} at a time${START_EVERY_MS ? `, one started every ${START_EVERY_MS} ms at most` : ''}: every flow done after ${(flowsMs / 1000).toFixed(0)} s; the wait for all to be active ended after ${(allActiveMs / 1000).toFixed(0)} s${waitedFor.length ? ' (in vain)' : ''}`,
  ], {
    'worker processes started': stack.workersStarted,
    'answers': answers,
    'signup rows': signups.length,
    'signup states': tally(signups.map((s) => s.state)),
    'users (one per email)': users.length,
    'user statuses': tally(users.map((u) => u.status)),
    'signup_completed audit events': completed.length,
    'password rows': Number(passwords[0]!.count),
    'workflow results': tally(results.map((r) => JSON.stringify(r))),
    'mails per signup (a send retried after a kill can mail again; each of its links works)': mailsPerSignup,
    'links answered 410': answers['CONFIRM 410'] ?? 0,
    'signups not active': stuck,
    'flows that failed': flowErrors,
    'waited for in vain': waitedFor,
    'mode': FULL ? 'full' : 'reduced',
  });

  expect(flowErrors).toEqual([]);
  expect(waitedFor).toEqual([]);
  expect(answers['CONFIRM 410'] ?? 0, 'a link of a retried send stopped working').toBe(0);
  expect(kills.length).toBeGreaterThanOrEqual(MIN_KILLS);
  expect(done).toBe(SIGNUPS);
  expect(signups).toHaveLength(SIGNUPS);
  expect(new Set(signups.map((s) => s.identifier)).size).toBe(SIGNUPS);
  expect(signups.every((s) => s.state === 'active')).toBe(true);
  expect(users).toHaveLength(SIGNUPS);
  expect(new Set(users.map((u) => u.identifier)).size).toBe(SIGNUPS);
  expect(users.every((u) => u.status === 'active')).toBe(true);
  expect(new Set(signups.map((s) => s.user_id))).toEqual(new Set(users.map((u) => u.id)));
  expect(completed).toHaveLength(SIGNUPS);
  expect(Number(passwords[0]!.count)).toBe(SIGNUPS);
  expect(results.every((r) => (r as { outcome?: string }).outcome === 'active')).toBe(true);
});
