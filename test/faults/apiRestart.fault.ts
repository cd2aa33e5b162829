/**
 * API restarted while signups wait: the links mailed before the restart still work after it.
 * The API process is restarted twice: once gracefully (SIGTERM), once killed (SIGKILL); half of
 * the links are confirmed after each.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Stack } from '../../bench/stack';
import { eventually, pool, report, scale, startFaultStack, tally } from './support';

const SIGNUPS = scale(40, 10);
const PASSWORD = 'password waiting for a restart';

let stack: Stack;
beforeAll(async () => {
  stack = await startFaultStack();
});
afterAll(async () => {
  await stack?.close();
});

it(`keeps ${SIGNUPS} waiting signups' links working across API restarts`, async () => {
  const run = randomUUID().slice(0, 8);
  const emails = Array.from({ length: SIGNUPS }, (_, i) => `restart-api-${run}-${i}@faults.invalid`);
  const posted = await pool(emails, 4, (email) => stack.request('POST', '/api/v0/signups', { body: { tenant: 'default', email, display_name: 'Waiting', password: PASSWORD } }));
  const links = await pool(emails, 8, (email) => stack.mails.waitFor(email, 1, 120_000));
  const pidsBefore = stack.api.pid;

  // A person opens the link and confirms with the password chosen at signup.
  const open = (link: string) =>
    stack.request('POST', '/api/v0/signups/verify', { body: { token: new URL(link).searchParams.get('token'), password: PASSWORD }, headers: { accept: 'application/json' } });
  const half = Math.floor(SIGNUPS / 2);

  const t1 = Date.now();
  const how1 = await stack.api.stop('SIGTERM');
  await stack.restartApi();
  const restart1Ms = Date.now() - t1;
  const first = await pool(links.slice(0, half), 4, open);

  const t2 = Date.now();
  await stack.restartApi('SIGKILL');
  const restart2Ms = Date.now() - t2;
  const second = await pool(links.slice(half), 4, open);

  const identifiers = emails.map((e) => e.toLowerCase());
  await eventually(
    async () => Number((await stack.db('users').whereIn('identifier', identifiers).where({ status: 'active' }).count<{ count: string }[]>('* as count'))[0]!.count) === SIGNUPS,
    { timeoutMs: 60_000, what: 'every user active' },
  );
  const users = await stack.db('users').whereIn('identifier', identifiers).select('status');
  const signups = await stack.db('signups').whereIn('identifier', identifiers).select('state');

  report('API restarted', [
    `${SIGNUPS} signups posted and mailed, none opened; API process ${pidsBefore} stopped with SIGTERM (${how1}) and started again (${(restart1Ms / 1000).toFixed(1)} s)`,
    `${half} links opened; then the API killed with SIGKILL and started again (${(restart2Ms / 1000).toFixed(1)} s); the other ${SIGNUPS - half} opened`,
  ], {
    'POST answers': tally(posted.map((r) => r.status)),
    'link answers after the SIGTERM restart': tally(first.map((r) => `${r.status} ${r.body?.status ?? ''}`)),
    'link answers after the SIGKILL restart': tally(second.map((r) => `${r.status} ${r.body?.status ?? ''}`)),
    'user statuses': tally(users.map((u) => u.status)),
    'signup states': tally(signups.map((s) => s.state)),
  });

  expect(posted.every((r) => r.status === 202)).toBe(true);
  expect([...first, ...second].every((r) => r.status === 200 && r.body?.status === 'active')).toBe(true);
  expect(users).toHaveLength(SIGNUPS);
  expect(signups.every((s) => s.state === 'active')).toBe(true);
});
