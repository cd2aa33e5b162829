import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODEC_TOKEN, eventually, SECRET, startHarness, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const parsed = () => h.logLines.map((l) => JSON.parse(l) as Record<string, unknown>);

describe('logs', () => {
  it('hold no password, hash, token or secret after a full create and signup run, and carry request ids into activities', async () => {
    // A create, with a notification that fails once, and a password change.
    h.tmc.addUser({ id: 6001 });
    h.tmc.notifyStatus = 500;
    const create = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 6001, password: 'create-plaintext-1' });
    expect(create.status).toBe(200);
    await eventually(() => h.tmc.notificationAttempts(6001).length >= 1);
    h.tmc.notifyStatus = undefined;
    await eventually(() => h.tmc.notificationsFor(6001).length === 1);
    await h.tmcRequest('POST', '/api/v0/tmc-server/users/change-password', { user_id: create.body.user.id, old_password: 'create-plaintext-1', new_password: 'changed-plaintext-2' });
    await h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: create.body.user.id, password: 'wrong-plaintext-3' });

    // A signup, verified.
    const signup = await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'logs@example.org', display_name: 'L', password: 'signup-plaintext-4' } });
    await eventually(() => h.mail.to('logs@example.org').length === 1);
    const link = new URL(h.mail.latestLink('logs@example.org')!);
    const token = link.searchParams.get('token')!;
    expect((await h.request('POST', '/api/v0/signups/verify', { body: { token, password: 'signup-plaintext-4' }, headers: { accept: 'application/json' } })).status).toBe(200);
    // A codec call, whose token travels in the path.
    await h.request('POST', `/codec/${CODEC_TOKEN}/encode`, { body: { payloads: [] } });
    // A request with a bad secret.
    await h.request('POST', '/api/v0/tmc-server/users/authenticate', { body: { user_id: create.body.user.id, password: 'x' }, headers: { authorization: 'not-the-secret-5' } });

    const hashes = await h.db('user_passwords').pluck('password_hash');
    const all = h.logLines.join('');
    expect(h.logLines.length).toBeGreaterThan(5);
    for (const secret of ['create-plaintext-1', 'changed-plaintext-2', 'wrong-plaintext-3', 'signup-plaintext-4', token, SECRET, CODEC_TOKEN, 'not-the-secret-5', '$argon2id$', ...hashes]) {
      expect(all, secret).not.toContain(secret);
    }

    // The request id crosses Temporal as a header: activity logs carry the request's id.
    const signupRequestId = signup.headers.get('x-request-id');
    const sent = parsed().find((l) => l.msg === 'verification email sent');
    expect(sent?.requestId).toBe(signupRequestId);
    const notified = parsed().find((l) => l.msg === 'TMC notified: password managed here' && l.upstreamId === 6001);
    expect(notified?.requestId).toBe(create.headers.get('x-request-id'));
    const audit = await h.db('audit_events').where({ event_type: 'signup_started' }).first();
    expect(audit.request_id).toBe(signupRequestId);
  });

  it('redacts secrets that a careless log call passes by name', () => {
    h.log.info({ password: 'p-6', body: { new_password: 'p-7', token: 't-8' }, req: { headers: { authorization: 'a-9' } } }, 'careless');
    const line = h.logLines[h.logLines.length - 1]!;
    for (const s of ['p-6', 'p-7', 't-8', 'a-9']) expect(line).not.toContain(s);
    expect(line).toContain('[redacted]');
  });
});
