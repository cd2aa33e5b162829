import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type RunningApi } from '../src/api/main';
import { resolveKeys } from '../src/temporal/codec';
import { SECRET, startHarness, type Harness } from './support/harness';

let h: Harness;
let replica: RunningApi;
beforeAll(async () => {
  h = await startHarness({ env: { RATE_LIMIT_DISABLED: 'false' } });
  // A second API process's worth of app on the same database: limits are shared through PostgreSQL.
  replica = await startApi({ ...h.config, http: { ...h.config.http, port: 0 } }, { db: h.db, log: h.log, keys: resolveKeys(h.config, h.log) });
});
afterAll(async () => {
  await replica?.close();
  await h?.close();
});

const post = (base: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('rate limits', () => {
  it('limits signups per identifier across API replicas, with Retry-After and the headless-lms body', async () => {
    const body = { tenant: 'default', email: `limited-${randomUUID().slice(0, 6)}@example.org`, display_name: 'x', password: 'password1' };
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await post(i % 2 ? replica.url : h.api.url, '/api/v0/signups', body)).status);
    expect(statuses).toEqual([202, 202, 202, 202, 202]);
    const limited = await post(h.api.url, '/api/v0/signups', { ...body, email: body.email.toUpperCase() });
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(await limited.json()).toEqual({ error: 'too_many_requests', retry_after_seconds: retryAfter });
    // Another identifier from the same address is still allowed.
    expect((await post(replica.url, '/api/v0/signups', { ...body, email: `other-${randomUUID().slice(0, 6)}@example.org` })).status).toBe(202);
  });

  /** `authorization: null` sends no Authorization header. */
  const authenticate = (body: unknown, authorization: string | null = SECRET) =>
    post(h.api.url, '/api/v0/tmc-server/users/authenticate', body, authorization === null ? {} : { authorization });

  async function tmcUserWithPassword(password: string): Promise<string> {
    const upstreamId = 700 + Math.floor(Math.random() * 1_000_000);
    h.tmc.addUser({ id: upstreamId });
    const res = await post(h.api.url, '/api/v0/tmc-server/users/create', { upstream_id: upstreamId, password }, { authorization: SECRET });
    expect(res.status).toBe(200);
    return ((await res.json()) as { user: { id: string } }).user.id;
  }

  it('never refuses a correct password: 15 correct authenticates of one user in a minute are all true', async () => {
    // tmc-server calls authenticate on every login and every HTTP-basic-auth API request, and
    // reads anything but a bare `true` as "Invalid credentials".
    const userId = await tmcUserWithPassword('correct horse');
    const answers: string[] = [];
    for (let i = 0; i < 15; i++) {
      const res = await authenticate({ user_id: userId, password: 'correct horse' });
      answers.push(`${res.status} ${await res.text()}`);
    }
    expect(answers).toEqual(Array(15).fill('200 true'));
  });

  it('counts nothing for a request that fails the shared-secret check or validation', async () => {
    const userId = await tmcUserWithPassword('still mine');
    for (let i = 0; i < 12; i++) {
      expect((await authenticate({ user_id: userId, password: 'guess' }, 'not the secret')).status).toBe(401);
      expect((await authenticate({ user_id: userId, password: 'guess' }, null)).status).toBe(401);
      expect((await authenticate({ user_id: userId, password: 12345 })).status).toBe(400);
    }
    const res = await authenticate({ user_id: userId, password: 'still mine' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('true');
  });

  it('refuses a user with 429 after 10 failed authenticates, and only then', async () => {
    const userId = await tmcUserWithPassword('the real one');
    const statuses: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await authenticate({ user_id: userId, password: `guess ${i}` });
      statuses.push(`${res.status} ${await res.text()}`);
    }
    expect(statuses).toEqual(Array(10).fill('200 false'));
    const limited = await authenticate({ user_id: userId, password: 'the real one' });
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(await limited.json()).toEqual({ error: 'too_many_requests', retry_after_seconds: retryAfter });
    // Other users are unaffected, and so is an unknown user id.
    expect((await authenticate({ user_id: randomUUID(), password: 'x' })).status).toBe(200);
  });

  it('clears the failure count on a success', async () => {
    const userId = await tmcUserWithPassword('typo-prone');
    const answers: string[] = [];
    for (const round of [0, 1, 2]) {
      for (let i = 0; i < 8; i++) answers.push(await (await authenticate({ user_id: userId, password: `typo ${round} ${i}` })).text());
      answers.push(await (await authenticate({ user_id: userId, password: 'typo-prone' })).text());
    }
    expect(answers).toEqual([0, 1, 2].flatMap(() => [...Array(8).fill('false'), 'true']));
  });

  it('limits verification attempts per IP', async () => {
    let last = 0;
    for (let i = 0; i < 31; i++) {
      last = (await fetch(`${h.api.url}/api/v0/signups/verify?token=${'B'.repeat(43)}`, { headers: { accept: 'application/json' } })).status;
      if (i < 30) expect(last).toBe(410);
    }
    expect(last).toBe(429);
  });

  it('keeps emails out of the rate-limit table', async () => {
    const keys = await h.db('rate_limits').pluck('key');
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.join(' ')).not.toMatch(/@|example/);
  });
});
