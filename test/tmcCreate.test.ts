import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow';
import { randomUUID } from 'node:crypto';
import { getOrCreateUserFromTmc } from '../src/db/users';
import { verifyPassword } from '../src/passwords';
import { tmcUserWorkflowId } from '../src/workflows/shared';
import { historyText } from './support/history';
import { eventually, startHarness, type Harness } from './support/harness';

let h: Harness;
let nextId = 1000;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const create = (upstream_id: number, password: string) => h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id, password });
const authenticate = (user_id: string, password: string) => h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id, password });

async function pendingNotifyAttempt(upstreamId: number): Promise<{ attempt: number; lastFailure?: string } | undefined> {
  const description = await h.client.workflow.getHandle(tmcUserWorkflowId(upstreamId)).describe();
  const raw = description.raw.pendingActivities?.[0];
  if (!raw) return undefined;
  // Failure messages are encrypted like every payload: decode them as the UI would.
  const error = await decodeOptionalFailureToOptionalError(h.client.options.loadedDataConverter, raw.lastFailure);
  return { attempt: raw.attempt ?? 0, lastFailure: error?.message };
}

describe('POST /api/v0/tmc-server/users/create', () => {
  it('returns {user, password_set: true} with exactly the User fields', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId, email: '  Ada@Example.ORG ' });
    const res = await create(upstreamId, 'hunter22');
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['password_set', 'user']);
    expect(res.body.password_set).toBe(true);
    expect(Object.keys(res.body.user).sort()).toEqual(['created_at', 'deleted_at', 'email_domain', 'id', 'updated_at', 'upstream_id']);
    expect(res.body.user.upstream_id).toBe(upstreamId);
    expect(res.body.user.email_domain).toBe('Example.ORG');
    expect(res.body.user.deleted_at).toBeNull();
    expect(new Date(res.body.user.created_at).toISOString()).toBe(res.body.user.created_at);
    expect(res.body.user.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

    const details = await h.db('user_details').where({ user_id: res.body.user.id }).first();
    expect(details).toMatchObject({ email: 'Ada@Example.ORG', first_name: 'Ada', last_name: 'Lovelace' });
    const stored = await h.db('user_passwords').where({ user_id: res.body.user.id }).first();
    expect(stored.password_hash).toMatch(/^\$argon2id\$v=19\$m=65536,t=3,p=4\$/);
    expect(await verifyPassword(stored.password_hash, 'hunter22')).toBe(true);
  });

  it("uses TMC's courses_mooc_fi_user_id as the id and stores blank names as NULL", async () => {
    const upstreamId = nextId++;
    const id = '5a1f3f2e-4b7c-4d2e-9f00-0123456789ab';
    h.tmc.addUser({ id: upstreamId, courses_mooc_fi_user_id: id, user_field: { first_name: '  ', last_name: '' } });
    const res = await create(upstreamId, 'pw-12345');
    expect(res.status).toBe(200);
    expect(res.body.user.id).toBe(id);
    const details = await h.db('user_details').where({ user_id: id }).first();
    expect(details).toMatchObject({ first_name: null, last_name: null });
  });

  it('returns the existing user unchanged on a second create and replaces the password', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    const first = await create(upstreamId, 'first password');
    const second = await create(upstreamId, 'second password');
    expect(second.status).toBe(200);
    expect(second.body.user).toEqual(first.body.user);
    expect((await authenticate(first.body.user.id, 'second password')).body).toBe(true);
    expect((await authenticate(first.body.user.id, 'first password')).body).toBe(false);
  });

  it('answers 404 with the error JSON and writes nothing when TMC does not know the user', async () => {
    const upstreamId = nextId++;
    const res = await create(upstreamId, 'whatever1');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ title: 'Not Found', message: 'The user was not found in TMC.', source: null, data: null });
    expect(await h.db('users').where({ upstream_id: upstreamId }).first()).toBeUndefined();
  });

  it('answers 502 and writes nothing when TMC fails the user fetch', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.fetchStatus = 500;
    try {
      const res = await create(upstreamId, 'whatever1');
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({ title: 'Bad Gateway', message: 'TMC is unavailable.', source: null });
      expect(await h.db('users').where({ upstream_id: upstreamId }).first()).toBeUndefined();
    } finally {
      h.tmc.fetchStatus = undefined;
    }
  });

  it('ends 20 concurrent creates for one upstream_id with one user, 200 for each, and one notification', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    const passwords = Array.from({ length: 20 }, (_, i) => `concurrent password ${i}`);
    const results = await Promise.all(passwords.map((p) => create(upstreamId, p)));
    const failures = h.logLines.filter((l) => l.includes('request failed'));
    expect(results.map((r) => r.status), failures.join('\n')).toEqual(passwords.map(() => 200));
    const ids = new Set(results.map((r) => r.body.user.id));
    expect(ids.size).toBe(1);
    const rows = await h.db('users').where({ upstream_id: upstreamId });
    expect(rows).toHaveLength(1);

    const [hashRow] = await h.db('user_passwords').where({ user_id: rows[0].id });
    const matches = await Promise.all(passwords.map((p) => verifyPassword(hashRow.password_hash, p)));
    expect(matches.filter(Boolean)).toHaveLength(1);

    await eventually(() => h.tmc.notificationsFor(upstreamId).length >= 1);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(h.tmc.notificationsFor(upstreamId)).toHaveLength(1);
  });

  it("resolves primary-key conflicts of concurrent get-or-creates (TMC's courses_mooc_fi_user_id) to the winner's row", async () => {
    // Straight at the query, many rounds, so that the narrow window (both inserts past their
    // check of the upstream_id index, neither yet in the primary key's) is hit.
    for (let round = 0; round < 40; round++) {
      const upstreamId = nextId++;
      const tmcUser = { id: upstreamId, username: 'racer', email: 'racer@example.org', courses_mooc_fi_user_id: randomUUID() };
      const results = await Promise.allSettled(Array.from({ length: 10 }, () => h.db.transaction((trx) => getOrCreateUserFromTmc(trx, tmcUser))));
      const rejected = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
      expect(rejected, `round ${round}`).toEqual([]);
      const users = results.map((r) => (r as PromiseFulfilledResult<{ user: { id: string }; created: boolean }>).value);
      expect(new Set(users.map((u) => u.user.id))).toEqual(new Set([tmcUser.courses_mooc_fi_user_id]));
      expect(users.filter((u) => u.created)).toHaveLength(1);
      expect(await h.db('user_details').where({ user_id: tmcUser.courses_mooc_fi_user_id })).toHaveLength(1);
    }
  });

  it('never answers 500 when users-by-upstream-id calls and creates race for one user whose id TMC supplies', async () => {
    for (let round = 0; round < 3; round++) {
      const upstreamId = nextId++;
      const id = randomUUID();
      h.tmc.addUser({ id: upstreamId, courses_mooc_fi_user_id: id });
      const answers = await Promise.all([
        ...Array.from({ length: 8 }, () => h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${upstreamId}`)),
        ...Array.from({ length: 3 }, (_, i) => create(upstreamId, `racing password ${i}`)),
      ]);
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
      expect(new Set(answers.map((a) => (a.body.user ?? a.body).id))).toEqual(new Set([id]));
    }
  });

  it("gives a new id when TMC's courses_mooc_fi_user_id belongs to a deleted user", async () => {
    const upstreamId = nextId++;
    const id = randomUUID();
    await h.db('users').insert({ id, upstream_id: upstreamId, email_domain: 'example.org', deleted_at: new Date() });
    h.tmc.addUser({ id: upstreamId, courses_mooc_fi_user_id: id });
    const res = await create(upstreamId, 'after deletion');
    expect(res.status).toBe(200);
    expect(res.body.user.id).not.toBe(id);
    expect(res.body.user.upstream_id).toBe(upstreamId);
    expect((await authenticate(res.body.user.id, 'after deletion')).body).toBe(true);
  });

  it('keeps the plaintext password out of the workflow history (the hash is there)', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    const plaintext = 'plaintext-canary-7d1e0b';
    const res = await create(upstreamId, plaintext);
    expect(res.status).toBe(200);
    await eventually(() => h.tmc.notificationsFor(upstreamId).length === 1);
    const text = await historyText(h.client, tmcUserWorkflowId(upstreamId), h.codec);
    expect(text).toContain('$argon2id$v=19$');
    expect(text).not.toContain(plaintext);
    expect(text).not.toContain(Buffer.from(plaintext).toString('base64'));
  });
});

describe('the "password managed here" notification to TMC', () => {
  it('arrives with the right path, headers and body', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    const res = await create(upstreamId, 'notify me');
    const [call] = await eventually(() => {
      const calls = h.tmc.notificationsFor(upstreamId);
      return calls.length ? calls : undefined;
    });
    expect(call!.path).toBe(`/api/v8/users/${upstreamId}/set_password_managed_by_courses_mooc_fi`);
    expect(call!.body).toEqual({ courses_mooc_fi_user_id: res.body.user.id });
    expect(call!.headers['authorization']).toBe('Bearer tmc-admin-token');
    expect(call!.headers['ratelimit-protection-safe-api-key']).toBe('ratelimit-key');
    expect(call!.headers['content-type']).toBe('application/json');
    expect(call!.headers['accept']).toBe('application/json');

    const fetchCall = h.tmc.requests.find((r) => r.method === 'GET' && r.path === `/api/v8/users/${upstreamId}`);
    expect((fetchCall as { query?: string }).query).toBe('?show_user_fields=1');
    expect(fetchCall!.headers['authorization']).toBe('Bearer tmc-admin-token');
    expect(fetchCall!.headers['ratelimit-protection-safe-api-key']).toBe('ratelimit-key');

    const outcome = await eventually(() => h.db('tmc_password_notifications').where({ user_id: res.body.user.id }).first());
    expect(outcome.outcome).toBe('delivered');
  });

  it('answers create before the notification is delivered', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.notifyStatus = 500;
    try {
      const started = Date.now();
      const res = await create(upstreamId, 'fast answer');
      expect(res.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(h.tmc.notificationsFor(upstreamId)).toHaveLength(0);
    } finally {
      h.tmc.notifyStatus = undefined;
    }
    await eventually(() => h.tmc.notificationsFor(upstreamId).length === 1);
  });

  it('keeps being retried while TMC answers 500 or refuses connections, and arrives once TMC recovers', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.notifyStatus = 500;
    const res = await create(upstreamId, 'retry me');
    expect(res.status).toBe(200);
    await eventually(() => h.tmc.notificationAttempts(upstreamId).length >= 3);
    expect(h.tmc.notificationsFor(upstreamId)).toHaveLength(0);

    await h.tmc.goDown();
    try {
      const before = (await pendingNotifyAttempt(upstreamId))!.attempt;
      const refused = await eventually(async () => {
        const p = await pendingNotifyAttempt(upstreamId);
        return p && p.attempt >= before + 2 && /could not be reached/.test(p.lastFailure ?? '') ? p : undefined;
      });
      expect(refused.lastFailure).toMatch(/TMC could not be reached/);
    } finally {
      h.tmc.notifyStatus = undefined;
      await h.tmc.comeBack();
    }
    await eventually(() => h.tmc.notificationsFor(upstreamId).length === 1);
    const result = await h.client.workflow.getHandle(tmcUserWorkflowId(upstreamId)).result();
    expect(result).toEqual({ outcome: 'created', userId: res.body.user.id, notification: 'delivered' });
  });

  it('still arrives when the worker is stopped and restarted in the middle', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.notifyStatus = 503;
    const res = await create(upstreamId, 'survive restarts');
    expect(res.status).toBe(200);
    await eventually(() => h.tmc.notificationAttempts(upstreamId).length >= 1);

    await h.stopWorker();
    h.tmc.notifyStatus = undefined;
    const attemptsWhileDown = h.tmc.notificationAttempts(upstreamId).length;
    await new Promise((r) => setTimeout(r, 1_500));
    expect(h.tmc.notificationAttempts(upstreamId)).toHaveLength(attemptsWhileDown);

    await h.startWorker();
    await eventually(() => h.tmc.notificationsFor(upstreamId).length === 1, { timeoutMs: 30_000 });
  });

  it('stops being retried on a 404 and records it', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    h.tmc.notifyStatus = 404;
    try {
      const res = await create(upstreamId, 'gone in tmc');
      expect(res.status).toBe(200);
      const result = await h.client.workflow.getHandle(tmcUserWorkflowId(upstreamId)).result();
      expect(result).toEqual({ outcome: 'created', userId: res.body.user.id, notification: 'tmc_user_not_found' });
      await new Promise((r) => setTimeout(r, 1_000));
      expect(h.tmc.notificationAttempts(upstreamId)).toHaveLength(1);
      const outcome = await h.db('tmc_password_notifications').where({ user_id: res.body.user.id }).first();
      expect(outcome.outcome).toBe('tmc_user_not_found');
    } finally {
      h.tmc.notifyStatus = undefined;
    }
  });
});
