import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import { SECRET, startHarness, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ worker: false });
});
afterAll(async () => {
  await h?.close();
});

const endpoints: Array<[string, string, unknown]> = [
  ['POST', '/api/v0/tmc-server/users/create', { upstream_id: 1, password: 'x' }],
  ['POST', '/api/v0/tmc-server/users/authenticate', { user_id: '00000000-0000-4000-8000-000000000000', password: 'x' }],
  ['POST', '/api/v0/tmc-server/users/change-password', { user_id: '00000000-0000-4000-8000-000000000000', new_password: 'x' }],
  ['GET', '/api/v0/tmc-server/users-by-upstream-id/1', undefined],
  ['GET', '/api/v0/tmc-server/users-by-upstream-id/1/status', undefined],
];

const unauthorized = (reason: string) => ({
  title: 'Unauthorized',
  message: `TMC server authorization failed: ${reason}`,
  source: null,
  data: null,
});

/** Sends a header value that fetch() would refuse to send (a byte outside visible ASCII). */
function rawRequest(method: string, path: string, authorization: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const url = new URL(h.api.url + path);
    const req = httpRequest({ method, host: url.hostname, port: url.port, path, headers: { authorization, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(method === 'GET' ? undefined : '{}');
  });
}

describe.each(endpoints)('%s %s authorization', (method, path, body) => {
  it('returns 401 with the headless-lms error body when the header is missing', async () => {
    const res = await h.request(method, path, { body });
    expect(res.status).toBe(401);
    expect(res.body).toEqual(unauthorized('Missing Authorization header.'));
  });

  it('returns 401 with the headless-lms error body when the secret is wrong', async () => {
    const res = await h.request(method, path, { body, headers: { authorization: `${SECRET}x` } });
    expect(res.status).toBe(401);
    expect(res.body).toEqual(unauthorized('Invalid authorization token.'));
  });

  it('never reaches the handler without the secret through the path in other letter case', async () => {
    // @koa/router matches routes in any case but a router's own middleware (the secret check) only
    // as written: /API/V0/TMC-SERVER/… answered authenticate (200 true) with no Authorization.
    for (const variant of [path.toUpperCase(), path.replace('/api/', '/Api/'), path.replace('/users', '/Users')]) {
      const res = await h.request(method, variant, { body });
      expect([401, 404], variant).toContain(res.status);
    }
  });

  it('rejects the secret with a Bearer prefix: the raw header value is compared', async () => {
    const res = await h.request(method, path, { body, headers: { authorization: `Bearer ${SECRET}` } });
    expect(res.status).toBe(401);
    expect(res.body).toEqual(unauthorized('Invalid authorization token.'));
  });

  it('returns 401 "Invalid Authorization header format." for a header that is not visible ASCII', async () => {
    const res = await rawRequest(method, path, `${SECRET}\u00e9`);
    expect(res.status).toBe(401);
    expect(res.body).toEqual(unauthorized('Invalid Authorization header format.'));
  });
});

describe('request ids', () => {
  const UUIDISH = /^[0-9a-f-]{36}$/;

  it('sends request-id, as headless-lms does, and X-Request-Id on every response, errors included', async () => {
    const answers = [
      await h.tmcRequest('GET', '/api/v0/tmc-server/users-by-upstream-id/1/status'), // 200
      await h.request('POST', '/api/v0/tmc-server/users/authenticate', { body: {} }), // 401
      await h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: 'nope' }), // 400
      await h.request('GET', '/api/v0/nowhere'), // 404
      await h.request('GET', '/healthz'),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 401, 400, 404, 200]);
    for (const a of answers) {
      expect(a.headers.get('request-id')).toMatch(UUIDISH);
      expect(a.headers.get('x-request-id')).toBe(a.headers.get('request-id'));
    }
    expect(new Set(answers.map((a) => a.headers.get('request-id'))).size).toBe(answers.length);
  });

  it('takes an incoming request-id as the request id, as it takes X-Request-Id', async () => {
    const mine = await h.request('POST', '/api/v0/tmc-server/users/authenticate', { body: {}, headers: { 'request-id': 'tmc-req-1' } });
    expect(mine.headers.get('request-id')).toBe('tmc-req-1');
    expect(mine.headers.get('x-request-id')).toBe('tmc-req-1');
    const both = await h.request('GET', '/healthz', { headers: { 'request-id': 'from-request-id', 'x-request-id': 'from-x-request-id' } });
    expect(both.headers.get('request-id')).toBe('from-x-request-id');
    // An unusable id (spaces, too long) is replaced, not echoed.
    const bad = await h.request('GET', '/healthz', { headers: { 'request-id': 'has spaces in it' } });
    expect(bad.headers.get('request-id')).toMatch(UUIDISH);
    const logged = h.logLines.map((l) => JSON.parse(l) as { requestId?: string; status?: number }).find((l) => l.requestId === 'tmc-req-1');
    expect(logged?.status).toBe(401);
  });

  it("sends both on the answers Node's HTTP parser gives (oversized headers)", async () => {
    const url = new URL(h.api.url);
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const req = httpRequest({ host: url.hostname, port: url.port, path: '/healthz', headers: { 'x-big': 'h'.repeat(20_000) } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, ...res.headers }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(headers.status).toBe(431);
    expect(headers['request-id']).toMatch(UUIDISH);
    expect(headers['x-request-id']).toBe(headers['request-id']);
  });
});

describe('configuration', () => {
  it('refuses to start without the shared secret', async () => {
    expect(() => loadConfig({})).toThrow(/TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT: is required/);
  });
});
