/**
 * Fuzzed requests: generated bodies, headers, methods and path parameters (fast-check) go to
 * every endpoint: wrong types, huge strings, deep nesting, invalid UTF-8 (in bodies, headers and
 * percent-encoded paths), missing and extra fields. No 5xx, no crash, no hang, and the database
 * holds no rows it should not: only the signups the API accepted (and their candidate users).
 *
 * FUZZ_SEED=<n> replays a run (the seed is printed).
 */
import { Agent, request as httpRequest } from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CODEC_TOKEN, SECRET, type Stack } from '../../bench/stack';
import { notificationInvariant, pool, report, scale, sleep, startFaultStack, tally } from './support';

const REQUESTS = scale(10_000, 1_000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261122);
const TIMEOUT_MS = 30_000;

let stack: Stack;
beforeAll(async () => {
  // Rate limiting would answer most of this with 429 and hide the handlers from the fuzzer.
  stack = await startFaultStack({ env: { RATE_LIMIT_DISABLED: 'true' } });
});
afterAll(async () => {
  await stack?.close();
});

// ---- generators ------------------------------------------------------------------------------

type Kind = 'create' | 'authenticate' | 'change' | 'byId' | 'status' | 'signup' | 'verify' | 'resend' | 'codec' | 'plain';
const ENDPOINTS: Array<{ method: string; path: string; kind: Kind }> = [
  { method: 'POST', path: '/api/v0/tmc-server/users/create', kind: 'create' },
  { method: 'POST', path: '/api/v0/tmc-server/users/authenticate', kind: 'authenticate' },
  { method: 'POST', path: '/api/v0/tmc-server/users/change-password', kind: 'change' },
  { method: 'GET', path: '/api/v0/tmc-server/users-by-upstream-id/{param}', kind: 'byId' },
  { method: 'GET', path: '/api/v0/tmc-server/users-by-upstream-id/{param}/status', kind: 'status' },
  { method: 'POST', path: '/api/v0/signups', kind: 'signup' },
  { method: 'GET', path: '/api/v0/signups/verify?token={param}', kind: 'verify' },
  { method: 'POST', path: '/api/v0/signups/resend', kind: 'resend' },
  { method: 'POST', path: '/codec/decode', kind: 'codec' },
  { method: 'POST', path: '/codec/encode', kind: 'codec' },
  { method: 'POST', path: '/codec/{param}/decode', kind: 'codec' },
  { method: 'GET', path: '/healthz', kind: 'plain' },
  { method: 'GET', path: '/readyz', kind: 'plain' },
  { method: 'GET', path: '/metrics', kind: 'plain' },
  { method: 'GET', path: '/openapi.json', kind: 'plain' },
  { method: 'GET', path: '/{param}', kind: 'plain' },
];

/** Percent-encodes the UTF-8 bytes of `s` (lone surrogates become U+FFFD, as Buffer does). */
const encode = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');

const tricky = fc.constantFrom('\u0000', '\ud800', '\udfff', '\uFEFF', '\u202e', 'é', 'e\u0301', '𝔘𝔫𝔦', '\r\n', '"', '\\', '__proto__', 'constructor', 'NaN', '-0', '1e309', 'null', '{}', '[]');
const wildString = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.array(tricky, { maxLength: 4 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 70_000 }).map((n) => 'x'.repeat(n)) },
);
const deep = (depth: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
};
const wild: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: wildString },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 31, -(2 ** 31) - 1, 2 ** 53, Number.MAX_VALUE, 0.5, -1, 0) },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.integer({ min: 10, max: 2_000 }).map(deep) },
);
/** A field: valid most of the time, else anything; sometimes missing. */
const field = (valid: fc.Arbitrary<unknown>) => fc.option(fc.oneof({ weight: 3, arbitrary: valid }, { weight: 2, arbitrary: wild }), { freq: 6, nil: undefined });
const password = fc.oneof(fc.string({ minLength: 8, maxLength: 40 }), fc.string({ maxLength: 7 }), fc.integer({ min: 1_020, max: 1_100 }).map((n) => 'p'.repeat(n)));
const email = fc.oneof(fc.emailAddress(), fc.constantFrom(' Fuzz@Example.org ', 'a@b', 'not-an-email', '@', 'x@y.z'));
const upstreamId = fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.constantFrom(0, -1, 2 ** 31, 1.5));

const shapes: Record<Kind, fc.Arbitrary<Record<string, unknown>>> = {
  create: fc.record({ upstream_id: field(upstreamId), password: field(password) }),
  authenticate: fc.record({ user_id: field(fc.uuid()), password: field(password) }),
  change: fc.record({ user_id: field(fc.uuid()), old_password: field(fc.oneof(password, fc.constant(null))), new_password: field(password) }),
  signup: fc.record({ tenant: field(fc.constantFrom('default', 'nope', '')), email: field(email), display_name: field(fc.string({ maxLength: 30 })), password: field(password) }),
  resend: fc.record({ tenant: field(fc.constantFrom('default', 'nope')), email: field(email) }),
  codec: fc.record({ payloads: field(fc.array(fc.record({ metadata: field(fc.dictionary(fc.string({ maxLength: 10 }), fc.base64String({ maxLength: 40 }), { maxKeys: 3 })), data: field(fc.base64String({ maxLength: 200 })) }), { maxLength: 3 })) }),
  byId: fc.constant({}),
  status: fc.constant({}),
  verify: fc.constant({}),
  plain: fc.constant({}),
};

/** Bodies the endpoint accepts, with an extra field now and then: these reach argon2, Temporal, TMC and PostgreSQL. */
const goodPassword = fc.string({ minLength: 8, maxLength: 30 }).filter((p) => [...p.normalize('NFC')].length >= 8);
const goodEmail = fc.tuple(fc.stringMatching(/^[a-z][a-z0-9]{2,10}$/), fc.boolean()).map(([name, upper]) => (upper ? ` Fuzz-${name}@Example.org ` : `fuzz-${name}@example.org`));
const valid: Partial<Record<Kind, fc.Arbitrary<Record<string, unknown>>>> = {
  create: fc.record({ upstream_id: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), password: goodPassword }),
  authenticate: fc.record({ user_id: fc.uuid(), password: goodPassword }),
  change: fc.record({ user_id: fc.uuid(), old_password: fc.oneof(goodPassword, fc.constant(null)), new_password: goodPassword }),
  signup: fc.record({ tenant: fc.constant('default'), email: goodEmail, display_name: fc.stringMatching(/^[A-Za-z ]{0,20}$/), password: goodPassword }),
  resend: fc.record({ tenant: fc.constant('default'), email: goodEmail }),
};

const bodyFor = (kind: Kind): fc.Arbitrary<Buffer | undefined> =>
  fc.oneof(
    ...(valid[kind]
      ? [{ weight: 2, arbitrary: fc.tuple(valid[kind], fc.dictionary(fc.string({ maxLength: 8 }), wild, { maxKeys: 1 })).map(([v, extra]) => Buffer.from(JSON.stringify({ ...extra, ...v }))) }]
      : []),
    {
      weight: 6,
      arbitrary: fc.tuple(shapes[kind], fc.dictionary(fc.string({ maxLength: 12 }), wild, { maxKeys: 2 })).map(([shape, extra]) => {
        const body = { ...extra, ...Object.fromEntries(Object.entries(shape).filter(([, v]) => v !== undefined)) };
        return Buffer.from(JSON.stringify(body));
      }),
    },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
    { weight: 1, arbitrary: fc.integer({ min: 100, max: 40_000 }).map((n) => Buffer.from('['.repeat(n) + ']'.repeat(n))) },
    { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => Buffer.from('{"a":'.repeat(n) + '1' + '}'.repeat(n))) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2_000 }).map((b) => Buffer.from(b)) },
    // Invalid UTF-8 inside an otherwise well-formed JSON string.
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 50 }).map((b) => Buffer.concat([Buffer.from('{"password":"'), Buffer.from(b.map((x) => 0x80 | x)), Buffer.from('","email":"a@b.org"}')])) },
    { weight: 1, arbitrary: fc.integer({ min: 60_000, max: 150_000 }).map((n) => Buffer.from(JSON.stringify({ password: 'x'.repeat(n) }))) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );

/** Header values: Latin-1 bytes (an HTTP client may send 0x80–0xFF, which is not UTF-8). */
const headerValue = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 80 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 12_000 }).map((n) => 'h'.repeat(n)) },
);
const FORBIDDEN_HEADERS = new Set(['content-length', 'transfer-encoding', 'host', 'connection', 'expect', 'upgrade', 'keep-alive', 'te', 'trailer']);
const headerName = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/).filter((n) => !FORBIDDEN_HEADERS.has(n));

/** Usually nothing (the endpoint's own choice), sometimes `arb`. */
const sometimes = <T>(arb: fc.Arbitrary<T>, oneIn: number) => fc.oneof({ weight: oneIn - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

const requestArb = fc
  .record({
    endpoint: fc.constantFrom(...ENDPOINTS),
    method: sometimes(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'), 8),
    param: fc.oneof(
      fc.integer().map(String),
      fc.string({ maxLength: 30 }).map(encode),
      fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('')), minLength: 43, maxLength: 43 }),
      fc.constantFrom('%FF', '%C3%28', '%E0%80%80', '%ED%A0%80', '%', '%zz', '%00', '..', '-1', '2147483648', '99999999999', '0x10', '1e3', '%201', CODEC_TOKEN),
    ),
    authorization: fc.oneof(
      { weight: 6, arbitrary: fc.constant(SECRET) },
      { weight: 2, arbitrary: fc.constant(`Bearer ${CODEC_TOKEN}`) },
      { weight: 1, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.constantFrom(`Bearer ${SECRET}`, `${SECRET} `, 'Basic Zm9vOmJhcg==', '') },
      { weight: 1, arbitrary: headerValue },
    ),
    contentType: sometimes(
      fc.oneof(
        fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/json; charset=utf-16', 'application/*', ''),
        headerValue,
      ),
      5,
    ),
    accept: sometimes(fc.oneof(fc.constantFrom('application/json', 'text/html', '*/*', ''), headerValue), 3),
    contentEncoding: sometimes(fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-bogus'), 12),
    extra: fc.dictionary(headerName, headerValue, { maxKeys: 3 }),
  })
  .chain((r) => bodyFor(r.endpoint.kind).map((body) => ({ ...r, body })));

type FuzzRequest = typeof requestArb extends fc.Arbitrary<infer T> ? T : never;

// ---- the run ---------------------------------------------------------------------------------

interface Outcome {
  status: number;
  error?: string;
  ms: number;
}

function send(port: number, agent: Agent, req: FuzzRequest): Promise<Outcome> {
  const method = req.method ?? req.endpoint.method;
  const path = req.endpoint.path.replace('{param}', req.param);
  const headers: Record<string, string> = { ...req.extra };
  if (req.authorization !== undefined) headers.authorization = req.authorization;
  if (req.contentType !== undefined) headers['content-type'] = req.contentType;
  else if (req.body !== undefined && req.endpoint.method === 'POST') headers['content-type'] = 'application/json';
  if (req.accept !== undefined) headers.accept = req.accept;
  if (req.contentEncoding !== undefined) headers['content-encoding'] = req.contentEncoding;
  const body = method === 'GET' || method === 'HEAD' ? undefined : req.body;
  // Node's client frames no body for OPTIONS and DELETE unless told its length: the bytes would
  // reach the server as a second, garbled request.
  if (body !== undefined) headers['content-length'] = String(body.length);
  const started = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Omit<Outcome, 'ms'>) => {
      if (done) return;
      done = true;
      resolve({ ...o, ms: performance.now() - started });
    };
    let r;
    try {
      r = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent, timeout: TIMEOUT_MS }, (res) => {
        res.resume();
        res.on('end', () => finish({ status: res.statusCode ?? 0 }));
        res.on('error', (err) => finish({ status: res.statusCode ?? 0, error: `response: ${err.message}` }));
      });
    } catch (err) {
      // The client itself refused the request (e.g. a header it will not send): not the API's doing.
      finish({ status: -1, error: `client refused: ${(err as Error).message}` });
      return;
    }
    r.on('timeout', () => {
      r.destroy(new Error('timeout'));
      finish({ status: 0, error: 'hang: no answer in 30 s' });
    });
    r.on('error', (err) => finish({ status: 0, error: err.message }));
    r.end(body);
  });
}

it(`answers ${REQUESTS} fuzzed requests without a 5xx, a crash or a hang, and stores nothing it should not`, async () => {
  const requests = fc.sample(requestArb, { numRuns: REQUESTS, seed: SEED });
  const port = Number(new URL(stack.apiUrl).port);
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const apiPid = stack.api.pid;
  const started = Date.now();
  const outcomes = await pool(requests, 8, async (req) => {
    const first = await send(port, agent, req);
    // A reset without an answer can be the server refusing a connection it has just closed
    // (keep-alive race, or a body sent past a 413); a second try on a fresh connection says.
    if (first.status === 0 && !first.error?.startsWith('hang')) {
      const again = await send(port, new Agent({ keepAlive: false }), req);
      return { ...again, retried: first.error };
    }
    return first;
  });
  const elapsedMs = Date.now() - started;
  agent.destroy();

  // What the API accepted: only signups answered 202 with a valid body may leave rows.
  const accepted = new Set<string>();
  requests.forEach((req, i) => {
    if (req.endpoint.kind !== 'signup' || outcomes[i]!.status !== 202 || !req.body) return;
    try {
      const body = JSON.parse(req.body.toString('utf8'));
      if (typeof body.email === 'string') accepted.add(body.email.trim().toLowerCase());
    } catch {
      // not JSON: cannot have been accepted
    }
  });
  // Let accepted signups' workflows write their candidates.
  await sleep(5_000);
  const db = stack.db;
  const users = await db('users').select('id', 'identifier', 'upstream_id', 'status');
  const signups = await db('signups').select('id', 'identifier', 'user_id');
  const counts = async (table: string) => Number((await db(table).count<{ count: string }[]>('* as count'))[0]!.count);
  const orphanTokens = Number((await db('verification_tokens').whereNotIn('signup_id', db('signups').select('id')).count<{ count: string }[]>('* as count'))[0]!.count);
  const unexpectedUsers = users.filter((u) => u.upstream_id !== null || !accepted.has(u.identifier));
  const unexpectedSignups = signups.filter((s) => !accepted.has(s.identifier));
  const health = await stack.request('GET', '/healthz');
  const apiAlive = stack.api.process.exitCode === null && stack.api.process.signalCode === null;
  const workerAlive = stack.worker?.process.exitCode === null && stack.worker?.process.signalCode === null;

  const fivexx = outcomes.map((o, i) => ({ o, req: requests[i]! })).filter(({ o }) => o.status >= 500);
  const noAnswer = outcomes.map((o, i) => ({ o, req: requests[i]! })).filter(({ o }) => o.status === 0);
  const describe = ({ o, req }: { o: Outcome; req: FuzzRequest }) =>
    `${req.method ?? req.endpoint.method} ${req.endpoint.path.replace('{param}', req.param).slice(0, 120)} → ${o.status} ${o.error ?? ''} (auth ${JSON.stringify(req.authorization)?.slice(0, 40)}, type ${JSON.stringify(req.contentType)?.slice(0, 40)}, enc ${req.contentEncoding}, body ${req.body ? JSON.stringify(req.body.subarray(0, 160).toString('latin1')) : 'none'} (${req.body?.length ?? 0} bytes))`;

  report('Fuzzed requests', [
    `${REQUESTS} generated requests (fast-check seed ${SEED}; FUZZ_SEED replays), 8 at a time, over ${(elapsedMs / 1000).toFixed(0)} s`,
    'to every endpoint, with random methods, path parameters (incl. invalid percent-encoded UTF-8), headers (Latin-1 bytes, huge values), content types and encodings',
    'bodies: the endpoint\'s fields valid, of wrong types or missing, extra fields, any JSON, nesting up to 40 000 deep, raw bytes, invalid UTF-8, up to 150 KB',
  ], {
    'answers by endpoint kind': Object.fromEntries(
      [...new Set(requests.map((r) => r.endpoint.kind))].map((k) => [k, tally(outcomes.filter((_, i) => requests[i]!.endpoint.kind === k).map((o) => o.status))]),
    ),
    'statuses': tally(outcomes.map((o) => o.status)),
    '5xx': fivexx.length,
    'no answer': noAnswer.length,
    '5xx by Content-Encoding sent': tally(fivexx.map(({ req }) => req.contentEncoding ?? '(none)')),
    'first 5xx requests': fivexx.slice(0, 3).map(describe),
    'first 5xx requests without a Content-Encoding': fivexx.filter(({ req }) => req.contentEncoding === undefined || req.contentEncoding === 'identity').slice(0, 3).map(describe),
    'no-answer requests': noAnswer.slice(0, 5).map(describe),
    'client-side refusals (not sent)': outcomes.filter((o) => o.status === -1).length,
    'retried after a reset': outcomes.filter((o) => 'retried' in o).length,
    'first errors of the retried requests': tally(outcomes.flatMap((o) => ('retried' in o ? [String((o as { retried?: string }).retried)] : []))),
    'slowest answer (ms)': Math.round(Math.max(...outcomes.map((o) => o.ms))),
    'signups accepted (202, valid)': accepted.size,
    'rows: users / signups / user_passwords / tmc notifications / tenants': `${users.length} / ${signups.length} / ${await counts('user_passwords')} / ${await counts('tmc_password_notifications')} / ${await counts('tenants')}`,
    'rows not explained by an accepted signup': unexpectedUsers.length + unexpectedSignups.length + orphanTokens,
    'API alive, same process, /healthz': `${apiAlive}, ${stack.api.pid === apiPid}, ${health.status}`,
  });

  expect(fivexx.map(describe)).toEqual([]);
  expect(noAnswer.map(describe)).toEqual([]);
  expect(apiAlive).toBe(true);
  expect(workerAlive).toBe(true);
  expect(stack.api.pid).toBe(apiPid);
  expect(health.status).toBe(200);
  expect(unexpectedUsers).toEqual([]);
  expect(unexpectedSignups).toEqual([]);
  expect(orphanTokens).toBe(0);
  expect(await counts('tmc_password_notifications')).toBe(0);
  expect(await counts('tenants')).toBe(1);
  // Every signup row belongs to an accepted address, at most one pending per address.
  expect(new Set(signups.map((s) => s.identifier)).size).toBe(signups.length);
});

it('leaves every stored TMC password with a notification delivered, pending or recorded', async () => {
  expect(await notificationInvariant(stack, 'fuzz')).toEqual([]);
});
