import { randomInt, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type RunningApi } from '../src/api/main';
import { resolveKeys } from '../src/temporal/codec';
import { loadConfig } from '../src/config';
import { SECRET, startHarness, type Harness } from './support/harness';

let h: Harness;
let replica: RunningApi;
beforeAll(async () => {
  // One reverse proxy in front: the client is the rightmost X-Forwarded-For entry. Requests
  // without the header (the tests above the proxy ones) are limited by their socket address.
  h = await startHarness({ env: { RATE_LIMIT_DISABLED: 'false', TRUSTED_PROXY_COUNT: '1' } });
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

  it('counts HEAD, GET and POST of the link against one limit: no method reaches the handler unlimited', async () => {
    const from = { 'x-forwarded-for': '192.0.2.44' };
    const link = `${h.api.url}/api/v0/signups/verify?token=${'C'.repeat(43)}`;
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const method = ['HEAD', 'GET', 'POST'][i % 3]!;
      const res = await fetch(link, method === 'POST'
        ? { method, headers: { ...from, accept: 'application/json', 'content-type': 'application/json' }, body: JSON.stringify({ token: 'C'.repeat(43), password: 'guess-guess' }) }
        : { method, headers: { ...from, accept: 'application/json' } });
      statuses.push(res.status);
    }
    expect(statuses).toEqual(Array(30).fill(410));
    for (const method of ['HEAD', 'GET']) expect((await fetch(link, { method, headers: from })).status, method).toBe(429);
    // A browser over the limit gets a page.
    const page = await fetch(link, { headers: { ...from, accept: 'text/html' } });
    expect(page.status).toBe(429);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('Too many attempts');
  });

  it('cannot be stepped around by the path\'s letter case: /API/V0/SIGNUPS never reaches a handler unlimited, nor answers 500', async () => {
    // Routers match paths case-insensitively by default; the limits are looked up by path.
    const from = { 'x-forwarded-for': '192.0.2.61' };
    const body = { tenant: 'default', email: `case-${randomUUID().slice(0, 6)}@example.org`, display_name: 'x', password: 'password1' };
    const signups: number[] = [];
    for (let i = 0; i < 6; i++) signups.push((await post(h.api.url, '/API/V0/SIGNUPS', body, from)).status);
    expect(signups.filter((s) => s === 202).length).toBeLessThanOrEqual(5);
    expect(signups).not.toContain(500);
    const clicks: number[] = [];
    for (let i = 0; i < 31; i++) {
      clicks.push((await fetch(`${h.api.url}/API/v0/Signups/Verify?token=${'E'.repeat(43)}`, { headers: { ...from, accept: 'application/json' } })).status);
    }
    expect(clicks.filter((s) => s === 410).length).toBeLessThanOrEqual(30);
    const resend = await post(h.api.url, '/api/v0/signups/RESEND', { tenant: 'default', email: body.email }, from);
    expect(resend.status).not.toBe(500);
  });

  describe('behind one trusted proxy (TRUSTED_PROXY_COUNT=1), forged leftmost X-Forwarded-For entries', () => {
    /** What a client sends through the proxy: anything it likes, then the proxy appends its real address. */
    const forged = (realClient: string) => ({ 'x-forwarded-for': `${randomInt(1, 255)}.${randomInt(0, 255)}.${randomInt(0, 255)}.${randomInt(1, 255)}, ${realClient}` });

    it('do not give signups a fresh per-IP budget', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 21; i++) {
        const body = { tenant: 'default', email: `xff-${randomUUID().slice(0, 8)}@example.org`, display_name: 'x', password: 'password1' };
        statuses.push((await post(h.api.url, '/api/v0/signups', body, forged('198.51.100.7'))).status);
      }
      expect(statuses.slice(0, 20)).toEqual(Array(20).fill(202));
      expect(statuses[20]).toBe(429);
      // The limit is the real client's: another one behind the same proxy is not affected.
      const other = await post(h.api.url, '/api/v0/signups', { tenant: 'default', email: `xff-${randomUUID().slice(0, 8)}@example.org`, display_name: 'x', password: 'password1' }, forged('198.51.100.8'));
      expect(other.status).toBe(202);
    });

    it('do not give resends a fresh per-IP budget', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 21; i++) {
        statuses.push((await post(h.api.url, '/api/v0/signups/resend', { tenant: 'default', email: `xff-${randomUUID().slice(0, 8)}@example.org` }, forged('198.51.100.9'))).status);
      }
      expect(statuses.slice(0, 20)).toEqual(Array(20).fill(202));
      expect(statuses[20]).toBe(429);
    });

    it('do not give clicks on links a fresh per-IP budget', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 31; i++) {
        statuses.push((await fetch(`${h.api.url}/api/v0/signups/verify?token=${'D'.repeat(43)}`, { headers: { accept: 'application/json', ...forged('198.51.100.10') } })).status);
      }
      expect(statuses.slice(0, 30)).toEqual(Array(30).fill(410));
      expect(statuses[30]).toBe(429);
    });
  });

  it('refuses to start with TRUST_PROXY=true, which took the forgeable leftmost entry', () => {
    const env = { TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT: 'x' };
    expect(() => loadConfig({ ...env, TRUST_PROXY: 'true' })).toThrow(/TRUST_PROXY: replaced by TRUSTED_PROXY_COUNT/);
    expect(loadConfig({ ...env, TRUST_PROXY: 'false' }).http.trustedProxyCount).toBe(0);
    expect(loadConfig({ ...env, TRUSTED_PROXY_COUNT: '2' }).http.trustedProxyCount).toBe(2);
    expect(() => loadConfig({ ...env, TRUSTED_PROXY_COUNT: '-1' })).toThrow(/TRUSTED_PROXY_COUNT/);
  });

  it('keeps emails out of the rate-limit table', async () => {
    const keys = await h.db('rate_limits').pluck('key');
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.join(' ')).not.toMatch(/@|example/);
  });
});
