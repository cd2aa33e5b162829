import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startHarness, type Harness } from './support/harness';

let h: Harness;
let nextId = 1000;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('POST /api/v0/tmc-server/users/create', () => {
  it('returns {user, password_set: true} with exactly the User fields', async () => {
    const upstreamId = nextId++;
    h.tmc.addUser({ id: upstreamId, email: '  Ada@Example.ORG ' });
    const res = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: upstreamId, password: 'hunter22' });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['password_set', 'user']);
    expect(res.body.password_set).toBe(true);
    expect(Object.keys(res.body.user).sort()).toEqual(['created_at', 'deleted_at', 'email_domain', 'id', 'updated_at', 'upstream_id']);
    expect(res.body.user.upstream_id).toBe(upstreamId);
    expect(res.body.user.email_domain).toBe('Example.ORG');
    expect(res.body.user.deleted_at).toBeNull();
    expect(res.body.user.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
