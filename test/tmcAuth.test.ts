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

describe('configuration', () => {
  it('refuses to start without the shared secret', async () => {
    expect(() => loadConfig({})).toThrow(/TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT: is required/);
  });
});
