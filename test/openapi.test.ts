/**
 * GET /openapi.json: an OpenAPI 3.1 document that lists exactly the routes the Koa routers
 * serve, with request schemas generated from the zod schemas that validate the requests.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import pkg from '../package.json';
import { appRouters, createApp } from '../src/api/app';
import { createUserRequest } from '../src/api/tmcServer';
import type { Config } from '../src/config';
import { TmcClient } from '../src/tmc';
import { startHarness, type Harness } from './support/harness';

/** The document is plain JSON. */
type Doc = any;

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ worker: false });
});
afterAll(async () => {
  await h?.close();
});

/** An app made by createApp from the harness's dependencies and `config`, serving on a free port. */
async function serveApp(config: Config): Promise<{ app: Koa; doc: Doc; close(): Promise<void> }> {
  const app = createApp({ config, db: h.db, temporal: h.client, tmc: new TmcClient(config.tmc), log: h.log, codec: h.codec });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/openapi.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const doc = await res.json();
  return { app, doc, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** "METHOD /path" for every route the app's routers serve; `:param` as `{param}`; HEAD (added for each GET) left out. */
function servedRoutes(app: Koa): string[] {
  const routers = appRouters.get(app);
  if (!routers) throw new Error('createApp did not record its routers');
  const routes = new Set<string>();
  for (const router of routers) {
    for (const layer of router.stack) {
      // Middleware registered with router.use() has no methods.
      for (const method of layer.methods) {
        if (method === 'HEAD') continue;
        if (typeof layer.path !== 'string') throw new Error(`a route with a regular expression path: ${layer.path}`);
        routes.add(`${method} ${layer.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`);
      }
    }
  }
  return [...routes].sort();
}

function documentedRoutes(doc: Doc): string[] {
  const routes: string[] = [];
  for (const [path, item] of Object.entries<Doc>(doc.paths)) {
    for (const method of HTTP_METHODS) if (item[method]) routes.push(`${method.toUpperCase()} ${path}`);
  }
  return routes.sort();
}

function operations(doc: Doc): Array<{ route: string; path: string; op: Doc }> {
  return Object.entries<Doc>(doc.paths).flatMap(([path, item]) =>
    HTTP_METHODS.filter((m) => item[m]).map((m) => ({ route: `${m.toUpperCase()} ${path}`, path, op: item[m] })),
  );
}

function resolve(doc: Doc, ref: string): unknown {
  expect(ref).toMatch(/^#\//);
  return ref
    .slice(2)
    .split('/')
    .reduce<any>((node, key) => (node === undefined ? undefined : node[key.replace(/~1/g, '/').replace(/~0/g, '~')]), doc);
}

/** Every `$ref` anywhere in the document points at something that exists. */
function checkRefs(doc: Doc, node: unknown = doc): void {
  if (Array.isArray(node)) node.forEach((n) => checkRefs(doc, n));
  else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref') expect(resolve(doc, value as string), `${value} resolves`).toBeDefined();
      else checkRefs(doc, value);
    }
  }
}

const schemaOf = (doc: Doc, s: Doc) => (s?.$ref ? resolve(doc, s.$ref) : s) as Doc;

describe('GET /openapi.json', () => {
  it('is an OpenAPI 3.1 document served by the running service', async () => {
    const res = await h.request('GET', '/openapi.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.body.openapi).toMatch(/^3\.1\./);
    expect(res.body.info).toMatchObject({ title: 'tmc-durable-accounts', version: pkg.version });
    // Not behind the TMC secret or any other credential.
    expect(res.body.paths['/openapi.json'].get.security).toBeUndefined();
  });

  it('lists exactly the (method, path) pairs the routers serve, codec endpoints included', async () => {
    expect(h.config.codec.authToken).toBeTruthy();
    const served = await serveApp(h.config);
    try {
      const routes = servedRoutes(served.app);
      expect(documentedRoutes(served.doc)).toEqual(routes);
      // The routers' list is the one the brief names; a sanity check on the extraction itself.
      expect(routes).toEqual(
        [
          'POST /api/v0/tmc-server/users/create',
          'POST /api/v0/tmc-server/users/authenticate',
          'POST /api/v0/tmc-server/users/change-password',
          'GET /api/v0/tmc-server/users-by-upstream-id/{id}',
          'GET /api/v0/tmc-server/users-by-upstream-id/{id}/status',
          'POST /api/v0/signups',
          'GET /api/v0/signups/verify',
          'POST /api/v0/signups/verify',
          'POST /api/v0/signups/resend',
          'GET /healthz',
          'GET /readyz',
          'GET /metrics',
          'GET /openapi.json',
          // OPTIONS is registered on the codec router for CORS preflights, so it is documented.
          ...['encode', 'decode'].flatMap((d) => [`POST /codec/${d}`, `OPTIONS /codec/${d}`, `POST /codec/{token}/${d}`, `OPTIONS /codec/{token}/${d}`]),
        ].sort(),
      );
      // The harness's running API (same configuration) serves the same document.
      expect((await h.request('GET', '/openapi.json')).body).toEqual(served.doc);
    } finally {
      await served.close();
    }
  });

  it('leaves the codec endpoints out when they are not served (no CODEC_AUTH_TOKEN)', async () => {
    const served = await serveApp({ ...h.config, codec: { ...h.config.codec, authToken: undefined } });
    try {
      const routes = servedRoutes(served.app);
      expect(routes.some((r) => r.includes('/codec'))).toBe(false);
      expect(documentedRoutes(served.doc)).toEqual(routes);
      expect(served.doc.components.securitySchemes.codecToken).toBeUndefined();
      checkRefs(served.doc);
    } finally {
      await served.close();
    }
  });

  it('generates request schemas from the validating zod schemas', async () => {
    const doc = (await h.request('GET', '/openapi.json')).body;
    const schema = schemaOf(doc, doc.paths['/api/v0/tmc-server/users/create'].post.requestBody.content['application/json'].schema);
    expect(schema.type).toBe('object');
    expect(schema.required).toEqual(expect.arrayContaining(['upstream_id', 'password']));
    expect(schema.properties.upstream_id).toMatchObject({ type: 'integer', minimum: -(2 ** 31), maximum: 2 ** 31 - 1 });
    expect(schema.properties.password.type).toBe('string');
    // No length cap on TMC's passwords, as in headless-lms: only the body limit, which is described.
    expect(schema.properties.password.description).toMatch(/body limit/);
    expect(schema.properties.password.maxLength).toBeUndefined();
    // Exactly what zod makes of the very schema the handler parses with.
    const { $schema: _dialect, ...generated } = z.toJSONSchema(createUserRequest, { io: 'input' });
    expect(schema).toEqual(generated);

    const signup = doc.paths['/api/v0/signups'].post.requestBody.content['application/json'].schema;
    expect(signup.required).toEqual(expect.arrayContaining(['tenant', 'email', 'display_name', 'password']));
    expect(signup.properties.password.description).toMatch(/at least 8 characters/i);
  });

  it('describes the responses, errors and security schemes', async () => {
    const doc = (await h.request('GET', '/openapi.json')).body;
    checkRefs(doc);

    const ids = operations(doc).map(({ op }) => op.operationId);
    expect(new Set(ids).size).toBe(ids.length);

    for (const { route, path, op } of operations(doc)) {
      // Path parameters are declared, and only those.
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      const declared = (op.parameters ?? []).filter((p: Doc) => p.in === 'path').map((p: Doc) => p.name).sort();
      expect(declared, route).toEqual(templated);
      expect(Object.keys(op.responses).length, route).toBeGreaterThan(0);
      // Every 4xx/5xx has the error JSON, except 429 which has the rate limiter's body.
      for (const [status, response] of Object.entries<Doc>(op.responses)) {
        if (!/^[45]\d\d$|^default$/.test(status)) continue;
        const expected = status === '429' ? '#/components/schemas/RateLimited' : '#/components/schemas/Error';
        expect(response.content['application/json'].schema.$ref, `${route} ${status}`).toBe(expected);
      }
      // The TMC calls, and only they, need the shared secret.
      const tmc = path.startsWith('/api/v0/tmc-server/');
      expect(op.security?.some((s: Doc) => 'tmcSharedSecret' in s) ?? false, route).toBe(tmc);
    }

    expect(doc.components.securitySchemes.tmcSharedSecret).toMatchObject({ type: 'apiKey', in: 'header', name: 'Authorization' });
    expect(doc.components.schemas.Error).toMatchObject({
      type: 'object',
      required: ['title', 'message', 'source', 'data'],
      additionalProperties: false,
      properties: { source: { type: 'null' } },
    });
    expect(doc.components.schemas.RateLimited).toMatchObject({
      required: ['error', 'retry_after_seconds'],
      properties: { error: { const: 'too_many_requests' }, retry_after_seconds: { type: 'integer' } },
    });
    expect(doc.components.schemas.User).toMatchObject({
      type: 'object',
      required: ['id', 'created_at', 'updated_at', 'deleted_at', 'upstream_id', 'email_domain'],
      additionalProperties: false,
    });
    expect(Object.keys(doc.components.schemas.User.properties).sort()).toEqual(
      ['created_at', 'deleted_at', 'email_domain', 'id', 'updated_at', 'upstream_id'],
    );

    const ok = (route: string, status = '200', type = 'application/json') => {
      const [method, path] = route.split(' ') as [string, string];
      return schemaOf(doc, doc.paths[path][method.toLowerCase()].responses[status].content[type].schema);
    };
    expect(ok('POST /api/v0/tmc-server/users/authenticate')).toEqual({ type: 'boolean' });
    expect(ok('POST /api/v0/tmc-server/users/change-password')).toEqual({ type: 'boolean' });
    expect(ok('POST /api/v0/tmc-server/users/create').properties.user).toEqual({ $ref: '#/components/schemas/User' });
    expect(ok('GET /api/v0/tmc-server/users-by-upstream-id/{id}')).toBe(doc.components.schemas.User);
    expect(ok('POST /api/v0/signups', '202')).toMatchObject({ properties: { status: { const: 'verification_sent' } } });
    expect(ok('POST /api/v0/signups/resend', '202')).toMatchObject({ properties: { status: { const: 'verification_sent' } } });
    expect(ok('POST /api/v0/signups/verify').properties.status).toEqual({ type: 'string', const: 'active' });
    expect(ok('GET /api/v0/signups/verify', '200', 'text/html')).toEqual({ type: 'string' });
    expect(ok('GET /api/v0/signups/verify').anyOf.map((s: { properties: { status: { const: string } } }) => s.properties.status.const)).toEqual(['confirmation_required', 'active']);
    expect(ok('POST /api/v0/signups/verify', '403')).toBe(doc.components.schemas.Error);
    expect(ok('GET /metrics', '200', 'text/plain')).toEqual({ type: 'string' });
    expect(doc.paths['/codec/decode'].options.responses['204']).toBeDefined();
  });

  it('documents what the endpoints actually answer (spot checks)', async () => {
    const doc = (await h.request('GET', '/openapi.json')).body;
    const health = await h.request('GET', '/healthz');
    expect(Object.keys(health.body)).toEqual(doc.paths['/healthz'].get.responses['200'].content['application/json'].schema.required);

    // A validation failure has the documented error shape.
    const bad = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 'x', password: 1 });
    expect(bad.status).toBe(400);
    expect(Object.keys(bad.body).sort()).toEqual([...doc.components.schemas.Error.required].sort());

    // A user from TMC has exactly the documented fields.
    h.tmc.addUser({ id: 9301 });
    const user = await h.tmcRequest('GET', '/api/v0/tmc-server/users-by-upstream-id/9301');
    expect(user.status).toBe(200);
    expect(Object.keys(user.body).sort()).toEqual([...doc.components.schemas.User.required].sort());
  });
});
