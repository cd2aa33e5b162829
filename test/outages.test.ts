/**
 * Dependency outages: PostgreSQL and Temporal each go away and come back. The API answers 503
 * with the error JSON (never `false`, never a hang) and recovers without a restart. This file
 * runs its own PostgreSQL and Temporal dev server so that stopping them disturbs no other file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type RunningPostgres } from '../src/dev/postgres';
import { startTemporalDevServer, type RunningDevServer } from '../src/dev/temporalServer';
import { eventually, startHarness, type Harness } from './support/harness';
import { tmcUserWorkflowId } from '../src/workflows/shared';

let pg: RunningPostgres;
let temporal: RunningDevServer;
let temporalPort: number;
let h: Harness;
let nextId = 4000;

beforeAll(async () => {
  [pg, temporal] = await Promise.all([startEmbeddedPostgres(), startTemporalDevServer()]);
  temporalPort = Number(temporal.address.split(':')[1]);
  h = await startHarness({ databaseUrl: await pg.createDatabase('outages'), temporalAddress: temporal.address });
});
afterAll(async () => {
  await h?.close();
  await temporal?.stop();
  await pg?.stop();
});

const create = (upstream_id: number, password: string) => h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id, password });
const authenticate = (user_id: string, password: string) => h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id, password });

describe('PostgreSQL outage', () => {
  it('answers 503 with the error JSON while PostgreSQL is down, and recovers when it returns', async () => {
    h.tmc.addUser({ id: nextId });
    const created = await create(nextId++, 'before the outage');
    expect(created.status).toBe(200);
    const userId = created.body.user.id;

    await pg.halt();
    try {
      const started = Date.now();
      const auth = await authenticate(userId, 'before the outage');
      expect(auth.status).toBe(503);
      expect(auth.body).toEqual({ title: 'Service Unavailable', message: 'The database is unavailable.', source: null, data: null });
      expect(Date.now() - started).toBeLessThan(10_000);

      const change = await h.tmcRequest('POST', '/api/v0/tmc-server/users/change-password', { user_id: userId, new_password: 'nope' });
      expect(change.status).toBe(503);

      h.tmc.addUser({ id: nextId });
      const duringCreate = await create(nextId++, 'during the outage');
      expect(duringCreate.status).toBe(503);
      expect(duringCreate.body).toMatchObject({ title: 'Service Unavailable', source: null });

      const status = await h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${nextId}/status`);
      expect(status.status).toBe(503);

      const ready = await h.request('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ title: 'Service Unavailable', message: 'Not ready: postgres unavailable.', source: null, data: { checks: { postgres: 'unavailable', temporal: 'ok' } } });
      expect((await h.request('GET', '/healthz')).status).toBe(200);
    } finally {
      await pg.resume();
    }

    const after = await eventually(async () => {
      const res = await authenticate(userId, 'before the outage');
      return res.status === 200 ? res : undefined;
    });
    expect(after.body).toBe(true);
    h.tmc.addUser({ id: nextId });
    expect((await create(nextId++, 'after the outage')).status).toBe(200);
  });
});

describe('PostgreSQL outage after TMC was notified', () => {
  it('calls TMC once: recording the outcome is retried on its own until PostgreSQL returns', async () => {
    const id = nextId++;
    h.tmc.addUser({ id });
    let release!: () => void;
    h.tmc.holdNotifications = new Promise<void>((r) => (release = r));
    try {
      expect((await create(id, 'notified once')).status).toBe(200);
      // TMC has the call and is about to answer 200; PostgreSQL goes away before we can record it.
      await eventually(() => h.tmc.notificationAttempts(id).length === 1);
      await pg.halt();
      try {
        release();
        await eventually(() => h.tmc.notificationsFor(id).length === 1);
        // The outcome's activity keeps failing (retried every 200 ms–1 s) while PostgreSQL is down.
        await new Promise((r) => setTimeout(r, 4_000));
      } finally {
        await pg.resume();
      }
    } finally {
      release();
      h.tmc.holdNotifications = undefined;
    }
    const result = await h.client.workflow.getHandle(tmcUserWorkflowId(id)).result();
    expect(result).toMatchObject({ outcome: 'created', notification: 'delivered' });
    expect(h.tmc.notificationAttempts(id)).toHaveLength(1);
    const row = await h.db('tmc_password_notifications').where({ upstream_id: id }).first();
    expect(row).toMatchObject({ outcome: 'delivered', deliveries: 1 });
  });
});

describe('Temporal outage', () => {
  it('answers create with 503 while Temporal is down, and recovers when it returns', async () => {
    await temporal.stop();
    try {
      h.tmc.addUser({ id: nextId });
      const started = Date.now();
      const res = await create(nextId++, 'temporal is down');
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ title: 'Service Unavailable', message: 'The workflow service is unavailable.', source: null, data: null });
      expect(Date.now() - started).toBeLessThan(10_000);
      const ready = await h.request('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.data).toEqual({ checks: { postgres: 'ok', temporal: 'unavailable' } });

      // A signup gets its 503 within the route's deadline, and leaves no reservation behind.
      const signupStarted = Date.now();
      const signup = await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'outage@example.org', display_name: 'O', password: 'password1' } });
      expect(signup.status).toBe(503);
      expect(signup.body).toMatchObject({ title: 'Service Unavailable', source: null });
      expect(Date.now() - signupStarted).toBeLessThan(10_500);
      expect(await h.db('signups').where({ identifier: 'outage@example.org' }).whereNot({ state: 'expired' })).toEqual([]);
    } finally {
      temporal = await startTemporalDevServer({ port: temporalPort });
    }

    h.tmc.addUser({ id: nextId });
    const upstreamId = nextId++;
    const ok = await eventually(async () => {
      const r = await create(upstreamId, 'temporal is back');
      return r.status === 200 ? r : undefined;
    }, { timeoutMs: 60_000, intervalMs: 1_000 });
    expect(ok.body.password_set).toBe(true);
    expect((await h.request('GET', '/readyz')).status).toBe(200);
    await eventually(() => h.tmc.notificationsFor(upstreamId).length === 1, { timeoutMs: 30_000 });
    const signup = await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'outage@example.org', display_name: 'O', password: 'password1' } });
    expect(signup.status).toBe(202);
    await eventually(() => h.mail.to('outage@example.org').length === 1, { timeoutMs: 30_000 });
  });
});
