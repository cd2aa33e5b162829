import { randomUUID } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createSignupActivities } from '../src/activities/signups';
import { createMailer } from '../src/mail';
import { SignupStateKey, signupWorkflowId } from '../src/workflows/shared';
import { historyText } from './support/history';
import { eventually, startHarness, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ env: { SIGNUP_RESEND_INTERVAL: '1s' } });
});
afterAll(async () => {
  await h?.close();
});

const email = () => `user-${randomUUID().slice(0, 8)}@example.org`;
const signup = (body: Record<string, unknown>, harness = h) => harness.request('POST', '/api/v0/signups', { body });
const json = { accept: 'application/json' };
const pathOf = (link: string) => new URL(link).pathname + new URL(link).search;

async function linkFor(address: string, harness = h, count = 1): Promise<string> {
  await eventually(() => harness.mail.to(address).length >= count);
  return harness.mail.latestLink(address)!;
}

async function signupRow(address: string, harness = h) {
  return harness.db('signups').where({ identifier: address.toLowerCase() }).orderBy('created_at', 'desc').first();
}

describe('POST /api/v0/signups → email → GET the link → active user', () => {
  it('activates the user, who can then authenticate through the TMC endpoint', async () => {
    const address = email();
    const res = await signup({ tenant: 'default', email: address, display_name: 'Ada Lovelace', password: 'correct horse' });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ status: 'verification_sent' });

    const link = await linkFor(address);
    expect(link.startsWith(`${h.api.url}/api/v0/signups/verify?token=`)).toBe(true);
    const row = await signupRow(address);
    const candidate = await h.db('users').where({ id: row.user_id }).first();
    expect(candidate.status).toBe('candidate');
    // A candidate cannot log in yet.
    expect((await h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: row.user_id, password: 'correct horse' })).body).toBe(false);

    const verified = await h.request('GET', pathOf(link), { headers: json });
    expect(verified.status).toBe(200);
    expect(verified.body).toEqual({ status: 'active', user_id: row.user_id });
    expect((await h.db('users').where({ id: row.user_id }).first()).status).toBe('active');

    const auth = await h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: row.user_id, password: 'correct horse' });
    expect(auth.body).toBe(true);

    const events = await h.db('audit_events').where({ user_id: row.user_id }).orderBy('id').pluck('event_type');
    expect(events).toEqual(['signup_started', 'signup_verification_sent', 'signup_completed']);
    const started = await h.db('audit_events').where({ user_id: row.user_id, event_type: 'signup_started' }).first();
    expect(started.tenant_id).toBe(row.tenant_id);
    expect(started.request_id).toBe(res.headers.get('x-request-id'));

    const result = await h.client.workflow.getHandle(signupWorkflowId(row.user_id)).result();
    expect(result).toEqual({ outcome: 'active' });
  });

  it('answers the link with a small HTML page when the client does not ask for JSON', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: '', password: 'password1' });
    const link = await linkFor(address);
    const res = await h.request('GET', pathOf(link), { headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(res.text).toContain('Your account is now active');
  });
});

describe('validation before any I/O', () => {
  const ok = { tenant: 'default', email: 'valid@example.org', display_name: 'Valid', password: 'long enough' };
  const bad: Array<[string, Record<string, unknown>]> = [
    ['an invalid email', { ...ok, email: 'not-an-email' }],
    ['an empty email', { ...ok, email: '' }],
    ['an email over 254 bytes', { ...ok, email: `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.org` }],
    ['a control character in the email', { ...ok, email: 'a\u0007b@example.org' }],
    ['a BOM in the display name', { ...ok, display_name: '\uFEFFAda' }],
    ['a control character in the display name', { ...ok, display_name: 'Ada\nLovelace' }],
    ['a display name over 256 bytes', { ...ok, display_name: 'é'.repeat(129) }],
    ['a password under 8 characters', { ...ok, password: 'short' }],
    ['a password over 1024 bytes', { ...ok, password: 'x'.repeat(1025) }],
    // 1 023 bytes as sent, 2 046 once NFC-normalized (U+0958 becomes U+0915 U+093C): the cap is on what is hashed.
    ['a password over 1024 bytes after NFC', { ...ok, password: '\u0958'.repeat(341) }],
    ['a missing password', { tenant: 'default', email: 'valid@example.org', display_name: 'x' }],
    ['a numeric email', { ...ok, email: 42 }],
  ];
  it.each(bad)('rejects %s with 400 and writes nothing', async (_name, body) => {
    const before = await h.db('signups').count<{ count: string }[]>('* as count');
    const res = await signup(body);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ title: 'Bad Request', source: null });
    expect(await h.db('signups').count<{ count: string }[]>('* as count')).toEqual(before);
  });

  it('answers 422 tenant_not_active for an unknown or a suspended tenant', async () => {
    await h.db('tenants').insert({ identifier: 'frozen', display_name: 'Frozen', status: 'suspended' });
    for (const tenant of ['nope', 'frozen']) {
      const res = await signup({ tenant, email: email(), display_name: 'x', password: 'password1' });
      expect(res.status).toBe(422);
      expect(res.body).toEqual({ title: 'Unprocessable Entity', message: 'tenant_not_active', source: null, data: null });
    }
  });
});

describe('a signup for an identifier whose signup is pending', () => {
  it('resumes it: same user and workflow, a fresh link, and the password does not change', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'Owner', password: 'owner password' });
    const firstLink = await linkFor(address);
    const first = await signupRow(address);

    await new Promise((r) => setTimeout(r, 1_100)); // past the 1 s resend interval of this harness
    const again = await signup({ tenant: 'default', email: address.toUpperCase(), display_name: 'Attacker', password: 'attacker password' });
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ status: 'verification_sent' });
    const secondLink = await linkFor(address, h, 2);
    expect(secondLink).not.toBe(firstLink);

    const rows = await h.db('signups').where({ identifier: address.toLowerCase() });
    expect(rows).toHaveLength(1);
    expect(rows[0].user_id).toBe(first.user_id);

    expect((await h.request('GET', pathOf(firstLink), { headers: json })).status).toBe(410);
    expect((await h.request('GET', pathOf(secondLink), { headers: json })).status).toBe(200);
    const login = (password: string) => h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: first.user_id, password });
    expect((await login('owner password')).body).toBe(true);
    expect((await login('attacker password')).body).toBe(false);
    expect((await h.db('users').where({ id: first.user_id }).first()).display_name).toBe('Owner');

    const events = await h.db('audit_events').where({ user_id: first.user_id }).pluck('event_type');
    expect(events).toContain('signup_resumed');
  });

  it('ends 50 concurrent signups for one email with one candidate and one workflow', async () => {
    const address = email();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => signup({ tenant: 'default', email: address, display_name: `n${i}`, password: `password ${i}` })),
    );
    expect(results.map((r) => r.status)).toEqual(results.map(() => 202));
    const rows = await h.db('signups').where({ identifier: address });
    expect(rows).toHaveLength(1);
    const users = await h.db('users').where({ identifier: address });
    await eventually(async () => (await h.db('users').where({ identifier: address })).length === 1);
    expect(users.length).toBeLessThanOrEqual(1);
    const workflows = [];
    for await (const wf of h.client.workflow.list({ query: `WorkflowId = "${signupWorkflowId(rows[0].user_id)}"` })) workflows.push(wf);
    expect(workflows).toHaveLength(1);
  });
});

describe('a signup for an already active identifier', () => {
  it('answers the same 202 and emails the address that an account exists', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'Existing', password: 'existing pw' });
    await h.request('GET', pathOf(await linkFor(address)), { headers: json });
    const row = await signupRow(address);

    const again = await signup({ tenant: 'default', email: address, display_name: 'Someone', password: 'other password' });
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ status: 'verification_sent' });
    const notice = await eventually(() => h.mail.to(address).find((m) => m.subject === 'You already have an account'));
    expect(notice.text).toContain('You already have an account');
    expect((await h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: row.user_id, password: 'existing pw' })).body).toBe(true);
  });
});

describe('GET /api/v0/signups/verify', () => {
  const gone = { title: 'Gone', message: 'This link is invalid, was already used, or has expired.', source: null, data: null };

  it('answers 410 for a forged token; clicking a link again answers as the first click did', async () => {
    const forged = await h.request('GET', `/api/v0/signups/verify?token=${'A'.repeat(43)}`, { headers: json });
    expect(forged.status).toBe(410);
    expect(forged.body).toEqual(gone);
    const garbage = await h.request('GET', `/api/v0/signups/verify?token=%00%FF`, { headers: json });
    expect(garbage.status).toBe(410);

    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    const link = await linkFor(address);
    const row = await signupRow(address);
    const [a, b] = await Promise.all([h.request('GET', pathOf(link), { headers: json }), h.request('GET', pathOf(link), { headers: json })]);
    for (const r of [a, b]) expect(r.status).toBe(200);
    const later = await h.request('GET', pathOf(link), { headers: json });
    expect(later.status).toBe(200);
    expect(later.body).toEqual({ status: 'active', user_id: row.user_id });
    expect((await h.db('users').where({ id: row.user_id }).first()).status).toBe('active');
    expect(await h.db('audit_events').where({ user_id: row.user_id, event_type: 'signup_completed' })).toHaveLength(1);
  });

  it('finishes a signup whose link was claimed by a click that never reached the workflow', async () => {
    // A click claimed the token, then failed before the workflow heard of it (and could not
    // give the claim back: PostgreSQL was gone). Its answer was a 503; the user clicks again.
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    const link = await linkFor(address);
    const row = await signupRow(address);
    expect(await h.db('verification_tokens').where({ signup_id: row.id }).update({ used_at: h.db.fn.now() })).toBe(1);
    const again = await h.request('GET', pathOf(link), { headers: json });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ status: 'active', user_id: row.user_id });
    expect((await signupRow(address)).state).toBe('active');
  });

});

describe('POST /api/v0/signups/resend', () => {
  it('always answers 202, and sends a fresh link only for a pending signup past the interval', async () => {
    const unknown = await h.request('POST', '/api/v0/signups/resend', { body: { tenant: 'default', email: email() } });
    expect(unknown.status).toBe(202);
    expect(unknown.body).toEqual({ status: 'verification_sent' });

    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    await linkFor(address);
    const tooSoon = await h.request('POST', '/api/v0/signups/resend', { body: { tenant: 'default', email: address } });
    expect(tooSoon.status).toBe(202);
    await new Promise((r) => setTimeout(r, 400));
    expect(h.mail.to(address)).toHaveLength(1);

    await new Promise((r) => setTimeout(r, 1_000));
    const resent = await h.request('POST', '/api/v0/signups/resend', { body: { tenant: 'default', email: address } });
    expect(resent.status).toBe(202);
    await linkFor(address, h, 2);
    expect((await signupRow(address)).emails_sent).toBe(2);
  });
});

describe('durability and operations', () => {
  it('delays the mail through an SMTP outage instead of losing it', async () => {
    const address = email();
    h.mail.failing = true;
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(h.mail.to(address)).toHaveLength(0);
    h.mail.failing = false;
    const link = await linkFor(address, h, 1);
    expect((await h.request('GET', pathOf(link), { headers: json })).status).toBe(200);
  });

  it('recognises a retried send: one already recorded is not mailed again, and an unrecorded one keeps the first link working', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    const first = await linkFor(address);
    const row = await signupRow(address);
    expect(row.emails_sent).toBe(1);
    const mailer = createMailer(h.config.mail);
    try {
      const { sendVerificationEmail } = createSignupActivities({ db: h.db, mailer, log: h.log, publicBaseUrl: h.config.signup.publicBaseUrl });
      // The worker died after the send was recorded, before the workflow knew: its retry sends nothing.
      await sendVerificationEmail({ signupId: row.id, sendNo: 1 });
      expect(h.mail.to(address)).toHaveLength(1);
      // The worker died between the mail and its record: the retry mails again, and both links work.
      await h.db('signups').where({ id: row.id }).update({ emails_sent: 0, last_email_sent_at: null });
      await sendVerificationEmail({ signupId: row.id, sendNo: 1 });
      const second = await linkFor(address, h, 2);
      expect(second).not.toBe(first);
      expect(await h.db('verification_tokens').where({ signup_id: row.id }).whereNull('used_at')).toHaveLength(2);
      expect((await signupRow(address)).emails_sent).toBe(1);
    } finally {
      mailer.close();
    }
    const opened = await h.request('GET', pathOf(first), { headers: json });
    expect(opened.status).toBe(200);
    expect(opened.body.status).toBe('active');
  });

  it('keeps retrying the mail through a long SMTP outage: short waits in the worker, then durable timers', async () => {
    const address = email();
    const refusedBefore = h.mail.refused;
    h.mail.failing = true;
    try {
      await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
      const row = await eventually(() => signupRow(address));
      const handle = h.client.workflow.getHandle(signupWorkflowId(row.user_id));
      // Attempts at 0, 2, 6 and 14 s are made in the worker; the next wait (16 s) is a timer.
      const timerStarted = await eventually(
        async () => (await handle.fetchHistory()).events?.find((e) => e.timerStartedEventAttributes)?.timerStartedEventAttributes,
        { timeoutMs: 25_000, intervalMs: 500, what: 'a backoff timer in the history' },
      );
      expect(Number(timerStarted.startToFireTimeout?.seconds)).toBeGreaterThanOrEqual(10);
      expect(h.mail.refused - refusedBefore).toBeGreaterThanOrEqual(4);
      expect(h.mail.to(address)).toHaveLength(0);
      expect((await handle.describe()).status.name).toBe('RUNNING');
    } finally {
      h.mail.failing = false;
    }
    const link = await eventually(() => h.mail.latestLink(address), { timeoutMs: 30_000, what: 'the link after the outage' });
    expect(h.mail.to(address)).toHaveLength(1);
    expect((await h.request('GET', pathOf(link), { headers: json })).status).toBe(200);
    const row = await signupRow(address);
    expect(row.state).toBe('active');
    const history = await h.client.workflow.getHandle(signupWorkflowId(row.user_id)).fetchHistory();
    await Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundlePath') }, dataConverter: h.dataConverter }, history, 'long-smtp-outage');
  }, 90_000);

  it('keeps SignupState current, finds the waiting signup by it, and keeps emails and tokens out of Temporal', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'Visible Name', password: 'password1' });
    const link = await linkFor(address);
    const row = await signupRow(address);
    const handle = h.client.workflow.getHandle(signupWorkflowId(row.user_id));

    const found = await eventually(async () => {
      for await (const wf of h.client.workflow.list({ query: `SignupState = "AwaitingVerification" AND WorkflowId = "${handle.workflowId}"` })) return wf;
      return undefined;
    });
    expect(found.workflowId).toBe(handle.workflowId);
    expect(found.workflowId).not.toContain(address);
    const description = await handle.describe();
    expect(await description.staticSummary()).toBe(`Signup in tenant default for user ${row.user_id}`);

    await h.request('GET', pathOf(link), { headers: json });
    await handle.result();
    const final = await handle.describe();
    expect(final.typedSearchAttributes.get(SignupStateKey)).toBe('Active');

    const text = await historyText(h.client, handle.workflowId, h.codec);
    const token = new URL(link).searchParams.get('token')!;
    expect(text).toContain(row.user_id);
    expect(text).not.toContain(address);
    expect(text).not.toContain(token);
    expect(text).not.toContain('Visible Name');
    expect(text).not.toContain('$argon2id$');
    const states = [...text.matchAll(/\b(AwaitingVerification|Activating|Active|Expired)\b/g)].map((m) => m[1]);
    expect(states).toEqual(expect.arrayContaining(['AwaitingVerification', 'Activating', 'Active']));
    expect(states.indexOf('Activating')).toBeLessThan(states.lastIndexOf('Active'));
  });
});

describe('expiry (SIGNUP_VERIFICATION_TTL=4s) and SIGNUP_REVEAL_EXISTING=true', () => {
  let short: Harness;
  beforeAll(async () => {
    short = await startHarness({ env: { SIGNUP_VERIFICATION_TTL: '4s', SIGNUP_REVEAL_EXISTING: 'true' } });
  });
  afterAll(async () => {
    await short?.close();
  });

  it('expires an unverified signup, removes the candidate and its tokens, and lets a later signup start fresh', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' }, short);
    const link = await linkFor(address, short);
    const first = await signupRow(address, short);
    const result = await short.client.workflow.getHandle(signupWorkflowId(first.user_id)).result();
    expect(result).toEqual({ outcome: 'expired', reason: 'timeout' });

    expect((await signupRow(address, short)).state).toBe('expired');
    expect(await short.db('users').where({ id: first.user_id }).first()).toBeUndefined();
    expect(await short.db('verification_tokens').where({ signup_id: first.id })).toEqual([]);
    const events = await short.db('audit_events').where({ user_id: first.user_id }).pluck('event_type');
    expect(events).toContain('signup_expired');
    const expired = await short.request('GET', pathOf(link), { headers: json });
    expect(expired.status).toBe(410);

    const again = await signup({ tenant: 'default', email: address, display_name: 'y', password: 'password2' }, short);
    expect(again.status).toBe(202);
    await eventually(() => short.mail.to(address).length === 2);
    const second = await signupRow(address, short);
    expect(second.user_id).not.toBe(first.user_id);
  });

  it('answers 409 already_exists for an active identifier', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' }, short);
    const link = await linkFor(address, short);
    expect((await short.request('GET', pathOf(link), { headers: json })).status).toBe(200);
    const res = await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' }, short);
    expect(res.status).toBe(409);
    expect(res.body).toEqual({ title: 'Conflict', message: 'already_exists', source: null, data: null });
  });
});
