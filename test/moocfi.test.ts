/**
 * The same user id as headless-lms: a new TMC user gets the id mooc.fi already has for them
 * (mooc.fi's GraphQL API, MOOCFI_GRAPHQL_URL), else a fresh UUID; the lookup never makes a call
 * miss its deadline.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeMoocfi } from './support/fakeMoocfi';
import { startHarness, type Harness } from './support/harness';

let h: Harness;
let moocfi: FakeMoocfi;
let nextId = 14_000;
beforeAll(async () => {
  moocfi = await new FakeMoocfi().start();
  h = await startHarness({ env: { MOOCFI_GRAPHQL_URL: moocfi.url, MOOCFI_TIMEOUT: '1s' } });
});
afterAll(async () => {
  await h?.close();
  await moocfi?.stop();
});

const create = (upstream_id: number) => h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id, password: 'mooc.fi password' });
const byUpstreamId = (id: number) => h.tmcRequest('GET', `/api/v0/tmc-server/users-by-upstream-id/${id}`);
const lookupsFor = (id: number) => moocfi.requests.filter((r) => r.body.variables?.upstream_id === id);

describe("a new TMC user's id", () => {
  it("is mooc.fi's id for them on create, asked with TMC's admin token", async () => {
    const upstreamId = nextId++;
    const id = randomUUID();
    h.tmc.addUser({ id: upstreamId });
    moocfi.ids.set(upstreamId, id.toUpperCase());
    const res = await create(upstreamId);
    expect(res.status).toBe(200);
    expect(res.body.user.id).toBe(id);
    const [lookup] = lookupsFor(upstreamId);
    expect(lookup?.headers.authorization).toBe('Bearer tmc-admin-token');
    expect(lookup?.body.query).toMatch(/user\(upstream_id: \$upstream_id\)\s*\{\s*id\s*\}/);
    // The notification tells TMC that same id.
    expect((await h.db('users').where({ upstream_id: upstreamId })).map((u) => u.id)).toEqual([id]);
  });

  it("is mooc.fi's id on users-by-upstream-id too, and is looked up only for a user not yet here", async () => {
    const upstreamId = nextId++;
    const id = randomUUID();
    h.tmc.addUser({ id: upstreamId });
    moocfi.ids.set(upstreamId, id);
    expect((await byUpstreamId(upstreamId)).body.id).toBe(id);
    expect((await byUpstreamId(upstreamId)).body.id).toBe(id);
    expect((await create(upstreamId)).body.user.id).toBe(id);
    expect(lookupsFor(upstreamId)).toHaveLength(1);
  });

  it("is TMC's courses_mooc_fi_user_id when TMC supplies one, without asking mooc.fi", async () => {
    const upstreamId = nextId++;
    const id = randomUUID();
    h.tmc.addUser({ id: upstreamId, courses_mooc_fi_user_id: id });
    moocfi.ids.set(upstreamId, randomUUID());
    expect((await create(upstreamId)).body.user.id).toBe(id);
    expect(lookupsFor(upstreamId)).toHaveLength(0);
  });

  it('is a fresh UUID when mooc.fi has no such user, fails, or answers nonsense', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId });
    const unknown = await create(upstreamId);
    expect(unknown.status).toBe(200);
    expect(lookupsFor(upstreamId)).toHaveLength(1);
    for (const fault of ['status', 'nonsense'] as const) {
      const id = nextId++;
      h.tmc.addUser({ id });
      moocfi.ids.set(id, randomUUID());
      if (fault === 'status') moocfi.status = 500;
      else moocfi.nonsense = true;
      try {
        const res = await create(id);
        expect(res.status, fault).toBe(200);
        expect(res.body.user.id).not.toBe(moocfi.ids.get(id));
        expect(lookupsFor(id)).toHaveLength(1);
      } finally {
        moocfi.status = undefined;
        moocfi.nonsense = false;
      }
    }
  });

  it('is a fresh UUID, in time, when mooc.fi is slow: the lookup is bounded (MOOCFI_TIMEOUT)', async () => {
    moocfi.delayMs = 10_000;
    try {
      for (const call of [create, byUpstreamId]) {
        const upstreamId = nextId++;
        h.tmc.addUser({ id: upstreamId });
        moocfi.ids.set(upstreamId, randomUUID());
        const started = Date.now();
        const res = await call(upstreamId);
        expect(res.status).toBe(200);
        expect((res.body.user ?? res.body).id).not.toBe(moocfi.ids.get(upstreamId));
        expect(Date.now() - started).toBeLessThan(4_000);
      }
    } finally {
      moocfi.delayMs = 0;
    }
  });
});
