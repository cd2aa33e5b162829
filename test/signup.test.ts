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

const tokenOf = (link: string) => new URL(link).searchParams.get('token')!;
/** POST /api/v0/signups/verify with the link's token and `{password}` or `{new_password}`. */
const confirmWith = (link: string, fields: { password?: string; new_password?: string }, harness = h) =>
  harness.request('POST', '/api/v0/signups/verify', { body: { token: tokenOf(link), ...fields }, headers: json });
const login = (userId: string, password: string, harness = h) =>
  harness.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: userId, password }).then((r) => r.body);

describe('POST /api/v0/signups → email → the link → confirm with the password → active user', () => {
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

    // Opening the link only shows: the user is still a candidate.
    const shown = await h.request('GET', pathOf(link), { headers: json });
    expect(shown.status).toBe(200);
    expect(shown.body).toEqual({ status: 'confirmation_required' });
    expect((await h.db('users').where({ id: row.user_id }).first()).status).toBe('candidate');

    const verified = await confirmWith(link, { password: 'correct horse' });
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

  it('answers the link with an HTML page holding the confirm form when the client does not ask for JSON', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: '', password: 'password1' });
    const link = await linkFor(address);
    const res = await h.request('GET', pathOf(link), { headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(res.text).toContain('<form method="post" action="verify">');
    expect(res.text).toContain(`name="token" value="${tokenOf(link)}"`);
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect((await signupRow(address)).state).toBe('awaiting_verification');
  });

  it("offers a new link for the link's tenant when the token no longer works", async () => {
    await h.db('tenants').insert({ identifier: 'acme-pages', display_name: 'Acme' }).onConflict('identifier').ignore();
    const address = email();
    await signup({ tenant: 'acme-pages', email: address, display_name: 'x', password: 'password1' });
    const link = await linkFor(address);
    expect(new URL(link).searchParams.get('tenant')).toBe('acme-pages');
    await h.db('verification_tokens').where({ signup_id: (await signupRow(address)).id }).delete(); // as a resend would
    const res = await h.request('GET', pathOf(link), { headers: { accept: 'text/html' } });
    expect(res.status).toBe(410);
    expect(res.text).toContain('<input type="hidden" name="tenant" value="acme-pages">');
    // Whatever a link carries is escaped into the page.
    const hostile = await h.request('GET', `/api/v0/signups/verify?token=x&tenant=${encodeURIComponent('"><script>alert(1)</script>')}`);
    expect(hostile.status).toBe(410);
    expect(hostile.text).not.toContain('<script>');
    expect(hostile.text).toContain('name="tenant" value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"');
  });
});

describe('pre-account takeover: the activated password is always one typed by whoever holds the link', () => {
  const owner = 'owner-pass-2';
  const stranger = 'attacker-pass-1';
  const pause = () => new Promise((r) => setTimeout(r, 1_100)); // past the 1 s resend interval of this harness

  it('stranger signs up first, owner second, owner confirms the newest link: only the owner\'s password works', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'Stranger', password: stranger });
    await linkFor(address);
    await pause();
    expect((await signup({ tenant: 'default', email: address.toUpperCase(), display_name: 'Owner', password: owner })).status).toBe(202);
    const newest = await linkFor(address, h, 2);
    const row = await signupRow(address);
    expect(await h.db('signups').where({ identifier: address })).toHaveLength(1);

    const res = await confirmWith(newest, { password: owner });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'active', user_id: row.user_id });
    expect(await login(row.user_id, owner)).toBe(true);
    expect(await login(row.user_id, stranger)).toBe(false);
    expect((await h.db('users').where({ id: row.user_id }).first()).display_name).toBe('Owner');
    expect(await h.db('audit_events').where({ user_id: row.user_id }).pluck('event_type')).toContain('signup_resumed');
  });

  it('owner signs up first, stranger second: the owner confirms with their password or chooses one; the stranger\'s never works', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'Owner', password: owner });
    const ownersLink = await linkFor(address);
    await pause();
    await signup({ tenant: 'default', email: address, display_name: 'Stranger', password: stranger });
    const strangersLink = await linkFor(address, h, 2);
    const row = await signupRow(address);

    // The stranger's attempt replaced the link; the owner's mail now leads to a fresh-link form.
    expect((await confirmWith(ownersLink, { password: owner })).status).toBe(410);
    // The newest mail is the stranger's attempt: the owner's password does not match it.
    const wrong = await confirmWith(strangersLink, { password: owner });
    expect(wrong.status).toBe(403);
    expect(wrong.body).toMatchObject({ title: 'Forbidden', source: null, data: null });
    expect(wrong.body.message).toMatch(/does not match/);
    // Nothing changed.
    expect((await signupRow(address)).state).toBe('awaiting_verification');
    expect((await h.db('users').where({ id: row.user_id }).first()).status).toBe('candidate');
    expect(await h.db('verification_tokens').where({ signup_id: row.id }).whereNotNull('used_at')).toEqual([]);

    const chosen = await confirmWith(strangersLink, { new_password: 'owner-chose-3' });
    expect(chosen.status).toBe(200);
    expect(chosen.body).toEqual({ status: 'active', user_id: row.user_id });
    expect(await login(row.user_id, 'owner-chose-3')).toBe(true);
    expect(await login(row.user_id, stranger)).toBe(false);
  });

  it("the owner opens the stranger's mail: a wrong guess is refused, a new password activates; the stranger's never works", async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'Stranger', password: stranger });
    const link = await linkFor(address);
    const row = await signupRow(address);
    expect((await confirmWith(link, { password: owner })).status).toBe(403);
    expect((await confirmWith(link, { new_password: owner })).status).toBe(200);
    expect(await login(row.user_id, owner)).toBe(true);
    expect(await login(row.user_id, stranger)).toBe(false);
    // Nor does the stranger's display name go to the owner's account.
    expect((await h.db('users').where({ id: row.user_id }).first()).display_name).toBe('');
    // Once active, the link changes nothing more, whatever it is sent with.
    expect((await confirmWith(link, { new_password: 'another-one-4' })).body).toEqual({ status: 'active', user_id: row.user_id });
    expect(await login(row.user_id, owner)).toBe(true);
    expect(await login(row.user_id, 'another-one-4')).toBe(false);
  });

  it('rejects a confirmation with both or neither password, or a new password that breaks the signup rules', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    const link = await linkFor(address);
    for (const fields of [{}, { password: 'password1', new_password: 'password2' }, { new_password: 'short' }, { new_password: 'x'.repeat(1025) }]) {
      const res = await confirmWith(link, fields);
      expect(res.status, JSON.stringify(fields).slice(0, 60)).toBe(400);
      expect(res.body).toMatchObject({ title: 'Bad Request', source: null });
    }
    expect((await signupRow(address)).state).toBe('awaiting_verification');
    // The page's form gets its problem shown on the form, not raw JSON.
    const form = await h.request('POST', '/api/v0/signups/verify', {
      raw: new URLSearchParams({ token: tokenOf(link), new_password: 'x'.repeat(1025) }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
    });
    expect(form.status).toBe(400);
    expect(form.headers.get('content-type')).toMatch(/text\/html/);
    expect(form.text).toContain('The new password must be at most 1024 bytes.');
    expect(form.text).toContain('name="new_password"');
  });
});

describe('mail scanners and link previews change nothing', () => {
  it('GET and HEAD of the link, however often, leave the signup, its token and its workflow as they were', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    const link = await linkFor(address);
    const row = await signupRow(address);
    for (const [method, accept] of [['GET', 'text/html'], ['HEAD', 'text/html'], ['GET', 'application/json'], ['HEAD', '*/*'], ['GET', '*/*']] as const) {
      const res = await h.request(method, pathOf(link), { headers: { accept } });
      expect(res.status, `${method} ${accept}`).toBe(200);
    }
    const choose = await h.request('GET', `${pathOf(link)}&choose=new`);
    expect(choose.status).toBe(200);
    expect(choose.text).toContain('name="new_password"');
    await new Promise((r) => setTimeout(r, 500));
    expect((await signupRow(address)).state).toBe('awaiting_verification');
    expect((await h.db('users').where({ id: row.user_id }).first()).status).toBe('candidate');
    expect(await h.db('verification_tokens').where({ signup_id: row.id }).whereNotNull('used_at')).toEqual([]);
    const history = await h.client.workflow.getHandle(signupWorkflowId(row.user_id)).fetchHistory();
    expect(history.events?.filter((e) => e.workflowExecutionSignaledEventAttributes)).toEqual([]);
    // The link still confirms afterwards.
    expect((await confirmWith(link, { password: 'password1' })).status).toBe(200);
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
  // Every attempt costs one argon2 hash now (the same time whatever the address's state), so a
  // burst of attempts is bounded by CPU: 10 at once stay well inside the 10 s answer deadline on
  // a loaded 2-core machine, where 20 came within a second of it and 50 did not fit.
  it('ends 10 concurrent signups for one email with one candidate and one workflow', async () => {
    const address = email();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => signup({ tenant: 'default', email: address, display_name: `n${i}`, password: `password ${i}` })),
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
    expect((await confirmWith(await linkFor(address), { password: 'existing pw' })).status).toBe(200);
    const row = await signupRow(address);

    const again = await signup({ tenant: 'default', email: address, display_name: 'Someone', password: 'other password' });
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ status: 'verification_sent' });
    const notice = await eventually(() => h.mail.to(address).find((m) => m.subject === 'You already have an account'));
    expect(notice.text).toContain('You already have an account');
    expect((await h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: row.user_id, password: 'existing pw' })).body).toBe(true);
  });
});

describe('GET and POST /api/v0/signups/verify', () => {
  const gone = { title: 'Gone', message: 'This link is invalid, was already used, or has expired.', source: null, data: null };

  it('answers 410 for a forged token; confirming again answers as the first confirmation did', async () => {
    const forged = await h.request('GET', `/api/v0/signups/verify?token=${'A'.repeat(43)}`, { headers: json });
    expect(forged.status).toBe(410);
    expect(forged.body).toEqual(gone);
    const garbage = await h.request('GET', `/api/v0/signups/verify?token=%00%FF`, { headers: json });
    expect(garbage.status).toBe(410);
    const forgedPost = await h.request('POST', '/api/v0/signups/verify', { body: { token: 'A'.repeat(43), new_password: 'password9' }, headers: json });
    expect(forgedPost.status).toBe(410);
    expect(forgedPost.body).toEqual(gone);

    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    const link = await linkFor(address);
    const row = await signupRow(address);
    const [a, b] = await Promise.all([confirmWith(link, { password: 'password1' }), confirmWith(link, { password: 'password1' })]);
    for (const r of [a, b]) expect(r.status).toBe(200);
    const later = await h.request('GET', pathOf(link), { headers: json });
    expect(later.status).toBe(200);
    expect(later.body).toEqual({ status: 'active', user_id: row.user_id });
    expect((await h.db('users').where({ id: row.user_id }).first()).status).toBe('active');
    expect(await h.db('audit_events').where({ user_id: row.user_id, event_type: 'signup_completed' })).toHaveLength(1);
  });

  it('finishes a signup whose link was claimed by a confirmation that never reached the workflow', async () => {
    // A confirmation claimed the token, then failed before the workflow heard of it (and could
    // not give the claim back: PostgreSQL was gone). Its answer was a 503; the user submits again.
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    const link = await linkFor(address);
    const row = await signupRow(address);
    expect(await h.db('verification_tokens').where({ signup_id: row.id }).update({ used_at: h.db.fn.now() })).toBe(1);
    // The page says it is on its way (and changes nothing); submitting again finishes it.
    expect((await h.request('GET', pathOf(link), { headers: json })).body).toEqual({ status: 'activating', user_id: row.user_id });
    const page = await h.request('GET', pathOf(link), { headers: { accept: 'text/html' } });
    expect(page.status).toBe(202);
    expect(page.text).toContain('Confirm again');
    expect(page.text).toContain('name="password"');
    const again = await confirmWith(link, { password: 'password1' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ status: 'active', user_id: row.user_id });
    expect((await signupRow(address)).state).toBe('active');
  });

});

describe('a closed workflow is never a 500', () => {
  /** A pending signup whose workflow an operator terminated (from the UI or the CLI). */
  async function terminatedSignup(password = 'password1') {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password });
    const link = await linkFor(address);
    const row = await signupRow(address);
    const handle = h.client.workflow.getHandle(signupWorkflowId(row.user_id));
    await handle.terminate('operator');
    expect((await handle.describe()).status.name).toBe('TERMINATED');
    return { address, link, row };
  }

  it('opening and confirming the link of a terminated signup: the page, then a fresh run that activates it', async () => {
    const { link, row } = await terminatedSignup();
    const shown = await h.request('GET', pathOf(link), { headers: json });
    expect(shown.status).toBe(200);
    expect(shown.body).toEqual({ status: 'confirmation_required' });
    const res = await confirmWith(link, { password: 'password1' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'active', user_id: row.user_id });
    const handle = h.client.workflow.getHandle(signupWorkflowId(row.user_id));
    expect(await handle.result()).toEqual({ outcome: 'active' });
    expect((await handle.describe()).typedSearchAttributes.get(SignupStateKey)).toBe('Active');
    expect(await login(row.user_id, 'password1')).toBe(true);
    // The fresh run found the mail already sent: no second mail.
    expect(h.mail.to(row.email)).toHaveLength(1);
    expect((await signupRow(row.email)).emails_sent).toBe(1);
  });

  it('a repeated signup and a resend for a terminated signup: a fresh run that mails a new link', async () => {
    const { address, row } = await terminatedSignup();
    await new Promise((r) => setTimeout(r, 1_100)); // past the resend interval
    const again = await signup({ tenant: 'default', email: address, display_name: 'y', password: 'second password' });
    expect(again.status).toBe(202);
    const second = await linkFor(address, h, 2);
    expect((await signupRow(address)).emails_sent).toBe(2);
    // Terminated again, then a resend: the count goes on from what the row records.
    await h.client.workflow.getHandle(signupWorkflowId(row.user_id)).terminate('operator, again');
    await new Promise((r) => setTimeout(r, 1_100));
    const resent = await h.request('POST', '/api/v0/signups/resend', { body: { tenant: 'default', email: address } });
    expect(resent.status).toBe(202);
    const third = await linkFor(address, h, 3);
    expect(third).not.toBe(second);
    expect((await signupRow(address)).emails_sent).toBe(3);
    expect((await confirmWith(third, { password: 'second password' })).status).toBe(200);
    expect(await login(row.user_id, 'second password')).toBe(true);
  });

  it('a workflow that completed is answered from the row: a confirmation after the activation changes nothing', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' });
    const link = await linkFor(address);
    const row = await signupRow(address);
    expect((await confirmWith(link, { password: 'password1' })).status).toBe(200);
    await h.client.workflow.getHandle(signupWorkflowId(row.user_id)).result();
    for (const fields of [{ password: 'password1' }, { new_password: 'password2' }]) {
      const res = await confirmWith(link, fields);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ status: 'active', user_id: row.user_id });
    }
    expect(await login(row.user_id, 'password1')).toBe(true);
  });
});

describe('no requester text in mail to an unverified address', () => {
  it('leaves the display name (and the link it carries) out of the verification mail, and gives it to the account after activation', async () => {
    const address = email();
    const spam = 'WIN 1000 EUR today: http://spam.example.invalid/claim';
    await signup({ tenant: 'default', email: address, display_name: spam, password: 'password1' });
    const link = await linkFor(address);
    const [mail] = h.mail.to(address);
    for (const part of [mail!.text, mail!.subject, JSON.stringify(mail)]) {
      expect(part).not.toContain('spam.example.invalid');
      expect(part).not.toContain('WIN 1000');
    }
    expect(mail!.text).toContain(link);
    expect((await confirmWith(link, { password: 'password1' })).status).toBe(200);
    expect((await h.db('users').where({ id: (await signupRow(address)).user_id }).first()).display_name).toBe(spam);
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
    expect((await confirmWith(link, { password: 'password1' })).status).toBe(200);
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
    const opened = await confirmWith(first, { password: 'password1' });
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
    expect((await confirmWith(link, { password: 'password1' })).status).toBe(200);
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

    expect((await confirmWith(link, { password: 'password1' })).status).toBe(200);
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

  it('a signup whose workflow was terminated and whose expiry has passed: the next signup ends it and starts afresh', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' }, short);
    const link = await linkFor(address, short);
    const first = await signupRow(address, short);
    await short.client.workflow.getHandle(signupWorkflowId(first.user_id)).terminate('operator');
    await new Promise((r) => setTimeout(r, 4_200)); // past the 4 s TTL: nothing expired the row
    expect((await signupRow(address, short)).state).toBe('awaiting_verification');
    expect((await short.request('GET', pathOf(link), { headers: json })).status).toBe(410);

    const again = await signup({ tenant: 'default', email: address, display_name: 'y', password: 'password2' }, short);
    expect(again.status).toBe(202);
    const fresh = await linkFor(address, short, 2);
    expect((await short.db('signups').where({ id: first.id }).first()).state).toBe('expired');
    expect(await short.db('users').where({ id: first.user_id }).first()).toBeUndefined();
    const second = await signupRow(address, short);
    expect(second.user_id).not.toBe(first.user_id);
    expect((await confirmWith(fresh, { password: 'password2' }, short)).status).toBe(200);
  });

  it('answers 409 already_exists for an active identifier', async () => {
    const address = email();
    await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' }, short);
    const link = await linkFor(address, short);
    expect((await confirmWith(link, { password: 'password1' }, short)).status).toBe(200);
    const res = await signup({ tenant: 'default', email: address, display_name: 'x', password: 'password1' }, short);
    expect(res.status).toBe(409);
    expect(res.body).toEqual({ title: 'Conflict', message: 'already_exists', source: null, data: null });
  });
});
