import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startHarness, type Harness } from './support/harness';

let h: Harness;
let nextId = 2000;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const authenticate = (user_id: string, password: string) => h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id, password });
const changePassword = (body: Record<string, unknown>) => h.tmcRequest('POST', '/api/v0/tmc-server/users/change-password', body);

async function createUser(password: string): Promise<string> {
  const upstreamId = nextId++;
  h.tmc.addUser({ id: upstreamId });
  const res = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: upstreamId, password });
  expect(res.status).toBe(200);
  return res.body.user.id;
}

describe('POST /api/v0/tmc-server/users/authenticate', () => {
  it('answers bare true for the right password and bare false for a wrong one', async () => {
    const id = await createUser('right password');
    const ok = await authenticate(id, 'right password');
    expect(ok.status).toBe(200);
    expect(ok.text).toBe('true');
    const bad = await authenticate(id, 'wrong password');
    expect(bad.status).toBe(200);
    expect(bad.text).toBe('false');
  });

  it('answers false for an unknown user', async () => {
    const res = await authenticate(randomUUID(), 'anything');
    expect(res.status).toBe(200);
    expect(res.text).toBe('false');
  });

  it('normalizes passwords to NFC before hashing and verifying', async () => {
    const decomposed = 'A\u030Asa'; // "Åsa" as A + combining ring
    const id = await createUser(decomposed);
    expect((await authenticate(id, '\u00C5sa')).body).toBe(true);
    expect((await authenticate(id, decomposed)).body).toBe(true);
  });

  it('verifies a PHC string made with headless-lms parameters by another Argon2 implementation', async () => {
    // Made by argon2-cffi (the reference C implementation) with m=65536, t=3, p=4, 32-byte output.
    const phc = '$argon2id$v=19$m=65536,t=3,p=4$qir5aC081VorivL3m6WlGQ$FA86Ud00d1oXPhvqiyvoaXg5uFiMx6ebY+QSVeqDCA4';
    const id = randomUUID();
    await h.db('users').insert({ id, upstream_id: nextId++, email_domain: 'example.org' });
    await h.db('user_passwords').insert({ user_id: id, password_hash: phc });
    expect((await authenticate(id, 'correct horse battery staple')).body).toBe(true);
    expect((await authenticate(id, 'correct horse battery stapl')).body).toBe(false);
  });

  it('answers false for a deleted user', async () => {
    const id = await createUser('deleted user');
    await h.db('users').where({ id }).update({ deleted_at: new Date() });
    expect((await authenticate(id, 'deleted user')).body).toBe(false);
  });
});

describe('POST /api/v0/tmc-server/users/change-password', () => {
  it('changes the password when old_password is correct', async () => {
    const id = await createUser('old secret');
    const res = await changePassword({ user_id: id, old_password: 'old secret', new_password: 'new secret' });
    expect(res.status).toBe(200);
    expect(res.text).toBe('true');
    expect((await authenticate(id, 'new secret')).body).toBe(true);
    expect((await authenticate(id, 'old secret')).body).toBe(false);
  });

  it('answers false and changes nothing when old_password is wrong', async () => {
    const id = await createUser('kept secret');
    const res = await changePassword({ user_id: id, old_password: 'not it', new_password: 'takeover' });
    expect(res.status).toBe(200);
    expect(res.text).toBe('false');
    expect((await authenticate(id, 'kept secret')).body).toBe(true);
    expect((await authenticate(id, 'takeover')).body).toBe(false);
  });

  it('sets the password unchecked when old_password is null (TMC reset path)', async () => {
    const id = await createUser('forgotten');
    const res = await changePassword({ user_id: id, old_password: null, new_password: 'reset one' });
    expect(res.text).toBe('true');
    expect((await authenticate(id, 'reset one')).body).toBe(true);
  });

  it('sets the password unchecked when old_password is absent', async () => {
    const id = await createUser('forgotten too');
    const res = await changePassword({ user_id: id, new_password: 'reset two' });
    expect(res.text).toBe('true');
    expect((await authenticate(id, 'reset two')).body).toBe(true);
  });

  it('answers false for an unknown user, with or without old_password', async () => {
    expect((await changePassword({ user_id: randomUUID(), new_password: 'x1234567' })).text).toBe('false');
    expect((await changePassword({ user_id: randomUUID(), old_password: 'a', new_password: 'x1234567' })).text).toBe('false');
  });

  it('does not notify TMC', async () => {
    const id = await createUser('quiet change');
    await eventually(() => h.tmc.notificationsFor(nextId - 1).length === 1);
    const before = h.tmc.requests.length;
    await changePassword({ user_id: id, new_password: 'quietly changed' });
    await new Promise((r) => setTimeout(r, 300));
    expect(h.tmc.requests.slice(before)).toEqual([]);
  });
});

describe('GET /api/v0/tmc-server/users-by-upstream-id/:id', () => {
  it('creates the user from TMC data, without a password, and returns the same user afterwards', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId, email: 'grace@navy.mil' });
    const first = await h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${upstreamId}`);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ upstream_id: upstreamId, email_domain: 'navy.mil', deleted_at: null });
    expect(await h.db('user_passwords').where({ user_id: first.body.id }).first()).toBeUndefined();
    const again = await h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${upstreamId}`);
    expect(again.body).toEqual(first.body);
  });

  it('answers 404 with the error JSON when TMC does not know the id', async () => {
    const res = await h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${nextId++}`);
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ title: 'Not Found', source: null });
  });

  it('answers 400 for an id that is not an int32', async () => {
    for (const bad of ['abc', '1.5', '99999999999', '%20']) {
      const res = await h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${bad}`);
      expect(res.status, bad).toBe(400);
      expect(res.body).toMatchObject({ title: 'Bad Request', source: null });
    }
  });
});

describe('GET /api/v0/tmc-server/users-by-upstream-id/:id/status', () => {
  it('reports false/null/false/null for an unknown id and never calls TMC', async () => {
    const upstreamId = nextId++;
    const before = h.tmc.requests.length;
    const res = await h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${upstreamId}/status`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ shadow_user_exists: false, courses_mooc_fi_user_id: null, password_set: false, deleted_at: null });
    expect(h.tmc.requests.length).toBe(before);
    expect(await h.db('users').where({ upstream_id: upstreamId }).first()).toBeUndefined();
  });

  it('reports the user id and password_set for an existing user', async () => {
    const id = await createUser('status check');
    const upstreamId = nextId - 1;
    const res = await h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${upstreamId}/status`);
    expect(res.body).toEqual({ shadow_user_exists: true, courses_mooc_fi_user_id: id, password_set: true, deleted_at: null });
  });
});
