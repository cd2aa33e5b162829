import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startHarness, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const metric = (text: string, line: RegExp) => {
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.split(' ').pop()) : 0;
};

describe('health', () => {
  it('GET /healthz answers liveness', async () => {
    const res = await h.request('GET', '/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  it('GET /readyz answers 200 while PostgreSQL and Temporal both answer', async () => {
    const res = await h.request('GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready', checks: { postgres: 'ok', temporal: 'ok' } });
  });
});

describe('GET /metrics', () => {
  it('counts HTTP requests by route and status, with latency histograms, and the business counters', async () => {
    const before = (await h.request('GET', '/metrics')).text;
    h.tmc.addUser({ id: 8101 });
    expect((await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 8101, password: 'metrics pw' })).status).toBe(200);
    await eventually(() => h.tmc.notificationsFor(8101).length === 1);
    await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'metrics@example.org', display_name: 'M', password: 'password1' } });
    await eventually(() => h.mail.to('metrics@example.org').length === 1);
    const link = new URL(h.mail.latestLink('metrics@example.org')!);
    const confirmed = await h.request('POST', '/api/v0/signups/verify', { body: { token: link.searchParams.get('token'), password: 'password1' }, headers: { accept: 'application/json' } });
    expect(confirmed.status).toBe(200);

    const after = await eventually(async () => {
      const text = (await h.request('GET', '/metrics')).text;
      return metric(text, /^accounts_tmc_notifications_delivered_total /) > metric(before, /^accounts_tmc_notifications_delivered_total /) ? text : undefined;
    });
    expect(after).toMatch(/^http_requests_total\{method="POST",route="\/api\/v0\/tmc-server\/users\/create",status="200"\} \d+/m);
    expect(after).toMatch(/^http_request_duration_seconds_bucket\{le="0.5",method="POST",route="\/api\/v0\/signups",status="202"\} \d+/m);
    for (const name of ['accounts_users_created_total', 'accounts_signups_started_total', 'accounts_signups_completed_total']) {
      expect(metric(after, new RegExp(`^${name} `)), name).toBe(metric(before, new RegExp(`^${name} `)) + 1);
    }
    expect(after).toMatch(/^accounts_signups_expired_total \d+/m);
  });
});
