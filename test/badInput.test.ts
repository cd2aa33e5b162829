import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECRET, startHarness, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
  h.tmc.addUser({ id: 3000 });
});
afterAll(async () => {
  await h?.close();
});

const auth = { authorization: SECRET, 'content-type': 'application/json' };
const UUID = '00000000-0000-4000-8000-000000000001';

const cases: Array<[string, string, string]> = [
  ['malformed JSON', '/api/v0/tmc-server/users/create', '{"upstream_id": 3000, "password": '],
  ['a JSON string instead of an object', '/api/v0/tmc-server/users/create', '"hello"'],
  ['null', '/api/v0/tmc-server/users/authenticate', 'null'],
  ['an empty body', '/api/v0/tmc-server/users/authenticate', ''],
  ['upstream_id as a string', '/api/v0/tmc-server/users/create', '{"upstream_id": "3000", "password": "pw"}'],
  ['upstream_id beyond int32', '/api/v0/tmc-server/users/create', '{"upstream_id": 2147483648, "password": "pw"}'],
  ['upstream_id as a float', '/api/v0/tmc-server/users/create', '{"upstream_id": 1.5, "password": "pw"}'],
  ['password as a number', '/api/v0/tmc-server/users/create', '{"upstream_id": 3000, "password": 12345678}'],
  ['a missing password', '/api/v0/tmc-server/users/create', '{"upstream_id": 3000}'],
  ['a missing upstream_id', '/api/v0/tmc-server/users/create', '{"password": "pw"}'],
  ['a non-UUID user_id', '/api/v0/tmc-server/users/authenticate', '{"user_id": "not-a-uuid", "password": "pw"}'],
  ['a missing user_id', '/api/v0/tmc-server/users/change-password', '{"new_password": "pw"}'],
  ['old_password as a number', '/api/v0/tmc-server/users/change-password', `{"user_id": "${UUID}", "old_password": 5, "new_password": "pw"}`],
  ['a missing new_password', '/api/v0/tmc-server/users/change-password', `{"user_id": "${UUID}", "old_password": null}`],
];

describe('bad input gets a 400 with the error JSON and writes nothing', () => {
  it.each(cases)('%s', async (_name, path, raw) => {
    const res = await h.request('POST', path, { raw, headers: auth });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ title: 'Bad Request', source: null });
    expect(typeof res.body.message).toBe('string');
    expect(await h.db('users').count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);
  });

  it('rejects a password over 1024 bytes with 400 before hashing', async () => {
    const long = 'é'.repeat(513); // 1026 bytes in UTF-8, 513 characters
    for (const [path, body] of [
      ['/api/v0/tmc-server/users/create', { upstream_id: 3000, password: long }],
      ['/api/v0/tmc-server/users/authenticate', { user_id: UUID, password: long }],
      ['/api/v0/tmc-server/users/change-password', { user_id: UUID, new_password: long }],
    ] as const) {
      const started = Date.now();
      const res = await h.request('POST', path, { body, headers: auth });
      expect(res.status, path).toBe(400);
      expect(res.body.message).toMatch(/at most 1024 bytes/);
      expect(res.text).not.toContain(long);
      expect(Date.now() - started).toBeLessThan(1_000);
    }
    expect(await h.db('users').count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);
  });

  it('accepts a password of exactly 1024 bytes', async () => {
    const res = await h.request('POST', '/api/v0/tmc-server/users/authenticate', { body: { user_id: UUID, password: 'a'.repeat(1024) }, headers: auth });
    expect(res.status).toBe(200);
    expect(res.body).toBe(false);
  });

  it('answers 413 with the error JSON for a body over the limit', async () => {
    const res = await h.request('POST', '/api/v0/tmc-server/users/create', {
      raw: JSON.stringify({ upstream_id: 3000, password: 'x', padding: 'p'.repeat(200_000) }),
      headers: auth,
    });
    expect(res.status).toBe(413);
    expect(res.body).toEqual({ title: 'Payload Too Large', message: 'The request body is too large.', source: null, data: null });
  });

  it('answers 415 with the error JSON for a body that is not declared as JSON', async () => {
    const res = await h.request('POST', '/api/v0/tmc-server/users/authenticate', {
      raw: JSON.stringify({ user_id: UUID, password: 'x' }),
      headers: { authorization: SECRET, 'content-type': 'text/plain' },
    });
    expect(res.status).toBe(415);
    expect(res.body).toMatchObject({ title: 'Unsupported Media Type', source: null });
  });

  it('answers 415 for a compressed body (found by the fuzzer: a broken gzip body was a 500)', async () => {
    for (const encoding of ['gzip', 'deflate', 'br']) {
      const res = await h.request('POST', '/api/v0/tmc-server/users/authenticate', { raw: 'not compressed at all', headers: { ...auth, 'content-encoding': encoding } });
      expect(res.status, encoding).toBe(415);
      expect(res.body).toMatchObject({ title: 'Unsupported Media Type', source: null });
    }
  });

  it('ignores unknown fields, as the contract says', async () => {
    const res = await h.request('POST', '/api/v0/tmc-server/users/authenticate', {
      body: { user_id: UUID, password: 'x', extra: { deep: [1, 2, 3] } },
      headers: auth,
    });
    expect(res.status).toBe(200);
    expect(res.body).toBe(false);
  });

  it('answers 404 with the error JSON for an unknown route and 405 for a wrong method', async () => {
    const missing = await h.request('GET', '/api/v0/nowhere');
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ title: 'Not Found', source: null, data: null });
    const wrong = await h.request('GET', '/api/v0/tmc-server/users/create', { headers: { authorization: SECRET } });
    expect(wrong.status).toBe(405);
    expect(wrong.body).toMatchObject({ title: 'Method Not Allowed', source: null });
  });
});
