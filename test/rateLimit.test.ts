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

  it('limits authenticate per user id, exempting the TMC server from the per-IP limit', async () => {
    const userId = randomUUID();
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await post(h.api.url, '/api/v0/tmc-server/users/authenticate', { user_id: userId, password: 'guess' }, { authorization: SECRET })).status);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(200));
    expect(statuses[10]).toBe(429);
    // Other users are unaffected.
    expect((await post(h.api.url, '/api/v0/tmc-server/users/authenticate', { user_id: randomUUID(), password: 'x' }, { authorization: SECRET })).status).toBe(200);
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
