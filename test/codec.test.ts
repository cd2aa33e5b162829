import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import { AesGcmCodec, loadKeys, parseKeys } from '../src/temporal/codec';
import { tmcUserWorkflowId } from '../src/workflows/shared';
import { historyText } from './support/history';
import { CODEC_TOKEN, eventually, startHarness, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const key = () => randomBytes(32).toString('base64');

describe('payload encryption', () => {
  it('keeps the email address and the password hash out of the raw history; the codec endpoint decodes them', async () => {
    h.tmc.addUser({ id: 7001, email: 'secret.person@example.org' });
    const res = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 7001, password: 'codec password' });
    expect(res.status).toBe(200);
    await h.client.workflow.getHandle(tmcUserWorkflowId(7001)).result();
    const { password_hash } = await h.db('user_passwords').where({ user_id: res.body.user.id }).first();

    const raw = await historyText(h.client, tmcUserWorkflowId(7001));
    expect(raw).toContain('binary/encrypted');
    expect(raw).not.toContain('secret.person@example.org');
    expect(raw).not.toContain(password_hash);
    expect(raw).not.toContain('$argon2id$');

    // The same payloads, sent to the endpoint the Temporal UI uses.
    const history = await h.client.workflow.getHandle(tmcUserWorkflowId(7001)).fetchHistory();
    // The email never enters the history: the local activity fetches the TMC user and writes the
    // row in one go, and only our `User` (id, email domain) comes back.
    const accepted = JSON.parse(JSON.stringify(history.events!.find((e) => e.workflowExecutionUpdateAcceptedEventAttributes)));
    const payloads = accepted.workflowExecutionUpdateAcceptedEventAttributes.acceptedRequest.input.args.payloads;
    const decoded = await h.request('POST', '/codec/decode', { body: { payloads }, headers: { authorization: `Bearer ${CODEC_TOKEN}`, 'x-namespace': 'default' } });
    expect(decoded.status).toBe(200);
    const text = Buffer.from(decoded.body.payloads[0].data, 'base64').toString('utf8');
    expect(text).toContain(password_hash);
    expect(Buffer.from(decoded.body.payloads[0].metadata.encoding, 'base64').toString()).toBe('json/plain');

    // Every payload of the run, decoded: the email is in none of them.
    const all: unknown[] = [];
    const collect = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(collect);
      else if (v && typeof v === 'object') {
        const o = v as Record<string, unknown>;
        if (o.metadata && typeof o.data === 'string') all.push(o);
        else Object.values(o).forEach(collect);
      }
    };
    collect(JSON.parse(JSON.stringify(history.events)));
    expect(all.length).toBeGreaterThan(3);
    const decodedAll = await h.request('POST', '/codec/decode', { body: { payloads: all }, headers: { authorization: `Bearer ${CODEC_TOKEN}` } });
    const plain = decodedAll.body.payloads.map((p: { data?: string }) => Buffer.from(p.data ?? '', 'base64').toString('utf8')).join('\n');
    expect(plain).toContain(password_hash);
    expect(plain).toContain('"email_domain":"example.org"');
    expect(plain).not.toContain('secret.person');

    // The path form the Temporal UI is configured with (`--ui-codec-endpoint …/codec/<token>`).
    const viaPath = await h.request('POST', `/codec/${CODEC_TOKEN}/decode`, { body: { payloads } });
    expect(viaPath.body).toEqual(decoded.body);
  });

  it('encodes failure messages too', async () => {
    h.tmc.addUser({ id: 7002 });
    h.tmc.notifyStatus = 503;
    await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 7002, password: 'failing notify' });
    await eventually(() => h.tmc.notificationAttempts(7002).length >= 2);
    h.tmc.notifyStatus = undefined;
    await h.client.workflow.getHandle(tmcUserWorkflowId(7002)).result();
    // A failed attempt's message lives on the pending activity; once done, check via describe of a failing run instead.
    const raw = await historyText(h.client, tmcUserWorkflowId(7002));
    expect(raw).not.toContain('TMC answered 503');
  });

  it('guards the codec endpoints with the token and answers CORS preflights for the UI origin only', async () => {
    const payloads = [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('"x"').toString('base64') }];
    const none = await h.request('POST', '/codec/encode', { body: { payloads } });
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ title: 'Unauthorized', source: null });
    expect((await h.request('POST', '/codec/wrong-token-000000/encode', { body: { payloads } })).status).toBe(401);

    const encoded = await h.request('POST', '/codec/encode', { body: { payloads }, headers: { authorization: `Bearer ${CODEC_TOKEN}` } });
    expect(encoded.status).toBe(200);
    expect(Buffer.from(encoded.body.payloads[0].metadata.encoding, 'base64').toString()).toBe('binary/encrypted');

    const preflight = await h.request('OPTIONS', '/codec/decode', { headers: { origin: 'http://localhost:8233', 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://localhost:8233');
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/X-Namespace/);
    const foreign = await h.request('OPTIONS', '/codec/decode', { headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } });
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('keys', () => {
  it('encrypts with the first key and decrypts with any listed key, so keys can rotate', async () => {
    const [oldKey, newKey] = [parseKeys(`old:${key()}`)[0]!, parseKeys(`new:${key()}`)[0]!];
    const payload = { metadata: { encoding: new TextEncoder().encode('json/plain') }, data: new TextEncoder().encode('"hello"') };
    const [sealedByOld] = await new AesGcmCodec([oldKey]).encode([payload]);
    const rotated = new AesGcmCodec([newKey, oldKey]);
    const [opened] = await rotated.decode([sealedByOld!]);
    expect(Buffer.from(opened!.data!).toString()).toBe('"hello"');
    const [sealedByNew] = await rotated.encode([payload]);
    expect(Buffer.from(sealedByNew!.metadata!['encryption-key-id']!).toString()).toBe('new');
    await expect(new AesGcmCodec([newKey]).decode([sealedByOld!])).rejects.toThrow(/key "old"/);
  });

  it('rejects malformed key lists, and production refuses to start without keys', () => {
    expect(() => parseKeys('nokey')).toThrow(/keyId:base64-of-32-bytes/);
    expect(() => parseKeys(`k:${randomBytes(16).toString('base64')}`)).toThrow(/entry 1/);
    expect(() => loadKeys({ production: true })).toThrow(/PAYLOAD_ENCRYPTION_KEYS is required/);
    expect(() => loadConfig({ NODE_ENV: 'production', TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT: 's', SMTP_URL: 'smtp://x:25' })).toThrow(
      /PAYLOAD_ENCRYPTION_KEYS: is required in production/,
    );
  });
});
