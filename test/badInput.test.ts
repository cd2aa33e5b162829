import { Agent, request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODEC_TOKEN, SECRET, startHarness, type Harness } from './support/harness';

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

  it('accepts passwords of any length on the TMC endpoints, as headless-lms does, up to the body limit', async () => {
    const long = 'é'.repeat(15_000); // 30 000 bytes in UTF-8: far over the signup cap; twice that fits in MAX_BODY_BYTES
    const res = await h.request('POST', '/api/v0/tmc-server/users/authenticate', { body: { user_id: UUID, password: long }, headers: auth });
    expect(res.status).toBe(200);
    expect(res.body).toBe(false);
    const change = await h.request('POST', '/api/v0/tmc-server/users/change-password', { body: { user_id: UUID, old_password: long, new_password: long }, headers: auth });
    expect(change.status).toBe(200);
    expect(change.body).toBe(false);
  });

  it('answers 413 with the error JSON for a body over the limit', async () => {
    const res = await h.request('POST', '/api/v0/tmc-server/users/create', {
      raw: JSON.stringify({ upstream_id: 3000, password: 'x', padding: 'p'.repeat(200_000) }),
      headers: auth,
    });
    expect(res.status).toBe(413);
    expect(res.body).toEqual({ title: 'Payload Too Large', message: 'The request body is too large.', source: null, data: null });
  });

  it('answers a client still sending an unread body, instead of resetting its connection', async () => {
    // 413 from the body limit (declared length over it), 415 from the content type: each is
    // decided before the body is read, and with `Connection: close` the socket closes after the
    // answer. Node reads and discards the rest of the body first, so the client gets the answer,
    // not a reset; this pins that down.
    const port = Number(new URL(h.api.url).port);
    const send = (path: string, headers: Record<string, string>, size: number) =>
      new Promise<number | string>((resolve) => {
        const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path, headers: { ...headers, connection: 'close', 'content-length': String(size) } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', (err) => resolve(err.message));
        // Written in pieces, as a client on a real network would.
        const chunk = Buffer.alloc(16 * 1024, 'x');
        let sent = 0;
        const write = () => {
          while (sent < size) {
            const n = Math.min(chunk.length, size - sent);
            sent += n;
            if (!req.write(chunk.subarray(0, n))) return void req.once('drain', write);
          }
          req.end();
        };
        write();
      });
    const answers: Array<number | string> = [];
    for (let i = 0; i < 10; i++) {
      answers.push(await send('/api/v0/tmc-server/users/create', auth, 300_000));
      answers.push(await send('/api/v0/signups', { 'content-type': 'text/plain' }, 150_000));
      answers.push(await send('/api/v0/tmc-server/users/authenticate', { authorization: 'wrong', 'content-type': 'application/json' }, 70_000));
    }
    expect(answers).toEqual(Array.from({ length: 10 }, () => [413, 415, 413]).flat());
  });

  it('answers 431 with the error JSON to oversized headers, even while the client is still sending a body', async () => {
    // Node's HTTP parser rejects headers over 16 KiB before the API sees the request. Its default
    // answer was an empty 431 and an immediate close: a client still sending its body got a
    // connection reset (ECONNRESET) instead of the answer (seen in the full fuzz run).
    const port = Number(new URL(h.api.url).port);
    // One keep-alive agent: an oversized request often arrives on a socket that has answered
    // before (and that socket must still get its answer).
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const send = (size: number, big = true) =>
      new Promise<{ status: number; body: string } | string>((resolve) => {
        const body = Buffer.alloc(size, 'x');
        const headers: Record<string, string> = big ? { 'x-big': 'h'.repeat(12_000), 'x-big2': 'h'.repeat(12_000) } : {};
        const req = httpRequest(
          { host: '127.0.0.1', port, method: 'POST', path: '/api/v0/signups', agent, headers: { ...headers, 'content-type': 'application/json', 'content-length': String(body.length) } },
          (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.on('error', (err) => resolve(err.message));
        req.end(body);
      });
    const answers = [];
    for (let i = 0; i < 10; i++) {
      expect(await send(2, false)).toMatchObject({ status: 400 }); // an ordinary bad request first
      answers.push(await send(0), await send(200_000));
    }
    agent.destroy();
    for (const a of answers) {
      expect(a).toMatchObject({ status: 431 });
      expect(JSON.parse((a as { body: string }).body)).toEqual({ title: 'Request Header Fields Too Large', message: 'The request headers are too large.', source: null, data: null });
    }
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

describe('JSON that headless-lms (serde) refuses is refused here too, on every endpoint', () => {
  // Every route that reads a JSON body, with a valid body for it: each case below spoils it.
  const routes: Array<[string, Record<string, string>, string]> = [
    ['/api/v0/tmc-server/users/create', auth, `{"upstream_id": 3000, "password": "PW"}`],
    ['/api/v0/tmc-server/users/authenticate', auth, `{"user_id": "${UUID}", "password": "PW"}`],
    ['/api/v0/tmc-server/users/change-password', auth, `{"user_id": "${UUID}", "old_password": "PW", "new_password": "PW"}`],
    ['/api/v0/signups', { 'content-type': 'application/json' }, `{"tenant": "default", "email": "surrogate@example.org", "display_name": "PW", "password": "PW"}`],
    ['/api/v0/signups/resend', { 'content-type': 'application/json' }, `{"tenant": "default", "email": "resend@example.org", "note": "PW"}`],
    ['/codec/encode', { 'content-type': 'application/json', authorization: `Bearer ${CODEC_TOKEN}` }, `{"payloads": [{"metadata": {"PW": "AAAA"}}], "note": 1}`],
  ];
  const spoilers: Array<[string, (valid: string) => string]> = [
    ['a lone high surrogate', (v) => v.replaceAll('PW', 'a\\ud800b')],
    ['a lone low surrogate', (v) => v.replaceAll('PW', 'a\\udfffb')],
    ['a high surrogate at the end of a string', (v) => v.replaceAll('PW', 'ab\\uD83D')],
    ['two high surrogates', (v) => v.replaceAll('PW', '\\ud83d\\ud83d')],
    ['a lone surrogate in an unknown field', (v) => v.replace(/^\{/, '{"extra": "\\udc00", ')],
    ['a lone surrogate in a key', (v) => v.replace(/^\{/, '{"\\ud800": 1, ')],
    ['a duplicate key', (v) => v.replace(/^\{/, '{"zz": 1, "zz": 2, ')],
    ['the first key twice', (v) => v.replace(/^\{("[a-z_]+": [^,]+), /, '{$1, $1, ')],
    ['a key twice, once escaped', (v) => v.replace(/^\{/, '{"zz": 1, "\\u007az": 2, ')],
    ['a duplicate key in a nested object', (v) => v.replace(/^\{/, '{"extra": [{"k": 1, "k": 1}], ')],
  ];

  it.each(routes)('%s accepts the valid body the cases spoil', async (path, headers, valid) => {
    const res = await h.request('POST', path, { raw: valid.replaceAll('PW', 'pw\u00e9\ud83d\ude00-a-valid-one'), headers });
    expect(res.status, res.text).not.toBe(400);
  });

  for (const [name, spoil] of spoilers) {
    it.each(routes)(`%s: 400 with the error JSON for ${name}`, async (path, headers, valid) => {
      const raw = spoil(valid);
      expect(raw).not.toBe(valid);
      const res = await h.request('POST', path, { raw, headers });
      expect(res.status, raw).toBe(400);
      expect(res.body).toMatchObject({ title: 'Bad Request', source: null });
      expect(res.body.message).toMatch(/lone UTF-16 surrogate|more than once/);
    });
  }

  it('refuses a body that is not UTF-8 (a surrogate encoded as bytes, an overlong form, a stray byte)', async () => {
    for (const bad of [Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xff])]) {
      const body = Buffer.concat([Buffer.from(`{"user_id": "${UUID}", "password": "a`), bad, Buffer.from('b"}')]);
      const res = await fetch(`${h.api.url}/api/v0/tmc-server/users/authenticate`, { method: 'POST', headers: auth, body });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ title: 'Bad Request', message: 'The request body is not valid UTF-8.', source: null });
    }
  });

  it('keeps "a\\ufffdb" a password of its own: a lone surrogate no longer authenticates as it', async () => {
    h.tmc.addUser({ id: 3001 });
    const created = await h.request('POST', '/api/v0/tmc-server/users/create', { raw: '{"upstream_id": 3001, "password": "a\\ufffdb"}', headers: auth });
    expect(created.status).toBe(200);
    const userId = created.body.user.id as string;
    const login = (password: string) => h.request('POST', '/api/v0/tmc-server/users/authenticate', { raw: `{"user_id": "${userId}", "password": "${password}"}`, headers: auth });
    expect((await login('a\\ufffdb')).text).toBe('true');
    expect((await login('a\\udfffb')).status).toBe(400);
    expect((await login('a\\ud800b')).status).toBe(400);
  });

  it('refuses the password key twice (the last one used to win) and writes nothing', async () => {
    h.tmc.addUser({ id: 3002 });
    const res = await h.request('POST', '/api/v0/tmc-server/users/create', { raw: '{"upstream_id": 3002, "password": "first", "password": "second"}', headers: auth });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ title: 'Bad Request', message: 'The request body has the key "password" more than once in one object.', source: null, data: null });
    expect(await h.db('users').where({ upstream_id: 3002 }).first()).toBeUndefined();
  });

  it('still parses deeply nested JSON without overflowing the stack (400 from the schema, not 500)', async () => {
    const deep = `{"user_id": "${UUID}", "password": "x", "extra": ${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
    const res = await h.request('POST', '/api/v0/tmc-server/users/authenticate', { raw: deep, headers: auth });
    expect(res.status).toBe(200);
    expect(res.body).toBe(false);
  });
});
