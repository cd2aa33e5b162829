/*!
 * The OpenAPI 3.1 document of the API, served at `GET /openapi.json`.
 *
 * Request bodies and parameters are generated with zod's own `z.toJSONSchema` (JSON Schema
 * 2020-12, the dialect of OpenAPI 3.1) from the very schemas the handlers validate with, so the
 * document cannot drift from the validation. Refinements (byte limits, "printable") cannot be
 * expressed in JSON Schema; the schemas carry `.meta({ description })` saying what they check.
 * Responses are described by the zod schemas below, which are checked at compile time against
 * the TypeScript types the handlers return.
 *
 * test/openapi.test.ts checks that the document lists exactly the (method, path) pairs the
 * routers serve.
 */
import Router from '@koa/router';
import { z } from 'zod';
import type { Config } from '../config';
import { TOKEN_FORMAT } from '../db/signups';
import type { UpstreamStatus, User } from '../db/users';
import type { CreateUserResponse } from '../workflows/shared';
import { payloadsBody } from './codec';
import type { ErrorBody } from './errors';
import { confirmRequest, resendRequest, signupRequest } from './signups';
import { changePasswordRequest, createUserRequest, loginRequest, upstreamIdParam } from './tmcServer';

export type JsonSchema = Record<string, unknown>;

/** Schemas listed in components.schemas: nested occurrences become `$ref`s to them. */
const components = new Map<z.core.$ZodType, string>();

/** A zod schema as JSON Schema 2020-12, without `$schema` (OpenAPI 3.1 defaults to that dialect). */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, {
    io,
    // `unrepresentable` stays 'throw': a schema JSON Schema cannot describe fails loudly here.
    override: (ctx) => {
      const name = components.get(ctx.zodSchema);
      if (name === undefined || ctx.path.length === 0) return;
      for (const key of Object.keys(ctx.jsonSchema)) delete (ctx.jsonSchema as JsonSchema)[key];
      (ctx.jsonSchema as JsonSchema).$ref = `#/components/schemas/${name}`;
    },
  });
  return rest;
}

// ---- Response bodies ------------------------------------------------------------------------

// Plain formats: zod's own uuid and datetime schemas would add long regular expressions.
const uuid = z.string().meta({ format: 'uuid' });
const timestamp = z.string().meta({ format: 'date-time', description: 'ISO 8601, UTC.' });

const userSchema = z
  .strictObject({
    id: uuid,
    created_at: timestamp,
    updated_at: timestamp,
    deleted_at: timestamp.nullable(),
    upstream_id: z.int32().nullable().meta({ description: 'The TMC user id, if the user came from TMC.' }),
    email_domain: z.string().nullable(),
  })
  .meta({ description: "The TMC contract's `User`, field for field." }) satisfies z.ZodType<User>;
components.set(userSchema, 'User');

const createUserResponseSchema = z.strictObject({
  user: userSchema,
  password_set: z.literal(true),
}) satisfies z.ZodType<CreateUserResponse>;

const upstreamStatusSchema = z.strictObject({
  shadow_user_exists: z.boolean(),
  courses_mooc_fi_user_id: uuid.nullable(),
  password_set: z.boolean(),
  deleted_at: timestamp.nullable(),
}) satisfies z.ZodType<UpstreamStatus>;

const errorSchema = z
  .strictObject({
    title: z.string().meta({ description: 'The HTTP reason phrase, e.g. "Bad Request".' }),
    message: z.string(),
    source: z.null(),
    data: z.unknown().meta({
      description:
        'null, or details: `{"problems":[{"field","problem"}]}` for invalid input (400), `{"checks":{…}}` for GET /readyz (503).',
    }),
  })
  .meta({ description: "The one error shape of every endpoint (headless-lms's ControllerError JSON)." }) satisfies z.ZodType<ErrorBody>;

const rateLimitedSchema = z.strictObject({
  error: z.literal('too_many_requests'),
  retry_after_seconds: z.int().min(0),
});

const verificationSentSchema = z.strictObject({ status: z.literal('verification_sent') });

const checksSchema = z.strictObject({
  postgres: z.enum(['ok', 'unavailable']),
  temporal: z.enum(['ok', 'unavailable']),
});

const payloadsResponseSchema = z.strictObject({
  payloads: z.array(
    z.strictObject({
      metadata: z.record(z.string(), z.string().meta({ description: 'base64' })),
      data: z.string().meta({ description: 'base64' }).optional(),
    }),
  ),
});

/** Compile-time: a response schema has exactly the keys of the type the handler returns. */
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false;
const sameKeys: [
  SameKeys<z.output<typeof userSchema>, User>,
  SameKeys<z.output<typeof createUserResponseSchema>, CreateUserResponse>,
  SameKeys<z.output<typeof upstreamStatusSchema>, UpstreamStatus>,
  SameKeys<z.output<typeof errorSchema>, ErrorBody>,
] = [true, true, true, true];
void sameKeys;

// ---- Building blocks ------------------------------------------------------------------------

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: JsonSchema) => ({ 'application/json': { schema } });
const body = (schema: z.ZodType) => ({ required: true, content: json(jsonSchema(schema, 'input')) });

interface Response {
  description: string;
  headers?: Record<string, { description: string; schema: JsonSchema }>;
  content?: Record<string, { schema: JsonSchema }>;
}

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid input: malformed JSON (or JSON serde refuses: not UTF-8, a duplicate key, a lone surrogate), wrong types, missing fields, values out of range; `data.problems` lists each problem by field.',
  401: 'Missing or wrong credentials.',
  404: 'Not found.',
  409: 'Conflict.',
  410: 'Gone.',
  413: 'The request body is over MAX_BODY_BYTES.',
  415: 'The request body was not sent as JSON (`Content-Type: application/json`).',
  422: 'Unprocessable.',
  502: 'TMC failed or refused our access token.',
  504: 'TMC did not answer its user fetch in time to answer within the 8 s deadline.',
  503: 'PostgreSQL or Temporal is unreachable; the service recovers by itself when they return.',
};

/** The error JSON for each status, with the standard description unless one is given. */
function errors(...statuses: Array<number | [number, string]>): Record<string, Response> {
  const out: Record<string, Response> = {};
  for (const s of statuses) {
    const [status, description] = typeof s === 'number' ? [s, ERROR_DESCRIPTIONS[s] ?? 'Error.'] : s;
    out[String(status)] = { description, content: json(ref('Error')) };
  }
  return out;
}

const RATE_LIMITED: Record<string, Response> = {
  429: { description: 'Too many requests from this client; retry after `retry_after_seconds`.', content: json(ref('RateLimited')) },
};
/** Any other failure (405 for another method, 500) has the error JSON too. */
const DEFAULT: Record<string, Response> = { default: { description: 'Any other error, e.g. 405 or 500.', content: json(ref('Error')) } };

interface Operation {
  operationId: string;
  tags: string[];
  summary: string;
  description?: string;
  security?: Array<Record<string, string[]>>;
  parameters?: Array<Record<string, unknown>>;
  requestBody?: unknown;
  responses: Record<string, Response>;
}
type PathItem = Partial<Record<'get' | 'post' | 'options', Operation>>;

// ---- The routes -----------------------------------------------------------------------------

const TMC_AUTH = [{ tmcSharedSecret: [] }];
const TMC_401: [number, string] = [
  401,
  'TMC server authorization failed: the Authorization header is missing, malformed, or not the shared secret.',
];
const upstreamIdParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: "TMC's user id (upstream id), a 32-bit signed integer.",
  schema: jsonSchema(upstreamIdParam, 'input'),
};

function tmcServerPaths(): Record<string, PathItem> {
  const base = '/api/v0/tmc-server';
  return {
    [`${base}/users/create`]: {
      post: {
        operationId: 'tmcCreateUser',
        tags: ['tmc-server'],
        summary: "Set a TMC user's password, creating the user from TMC's data first",
        description:
          'Runs as the durable tmcUserWorkflow, which then notifies TMC that the password is managed here. Concurrent creates for one upstream_id are applied one after another; the last wins.',
        security: TMC_AUTH,
        requestBody: body(createUserRequest),
        responses: {
          200: { description: 'The user and its password are committed.', content: json(ref('CreateUserResponse')) },
          ...errors(400, TMC_401, [404, 'TMC does not know the user.'], 413, 415, 502, 503, 504),
          ...DEFAULT,
        },
      },
    },
    [`${base}/users/authenticate`]: {
      post: {
        operationId: 'tmcAuthenticate',
        tags: ['tmc-server'],
        summary: 'Check a user_id/password pair',
        security: TMC_AUTH,
        requestBody: body(loginRequest),
        responses: {
          200: {
            description: 'Bare `true` if the user has a password and it matches, else `false`.',
            content: json(jsonSchema(z.boolean(), 'output')),
          },
          ...errors(400, TMC_401, 413, 415, 503),
          ...RATE_LIMITED,
          ...DEFAULT,
        },
      },
    },
    [`${base}/users/change-password`]: {
      post: {
        operationId: 'tmcChangePassword',
        tags: ['tmc-server'],
        summary: "Replace a user's password",
        description:
          'With a string `old_password`, it must verify first; with null or no `old_password` (TMC\'s reset path) the new password is set unchecked. TMC is not notified.',
        security: TMC_AUTH,
        requestBody: body(changePasswordRequest),
        responses: {
          200: {
            description: 'Bare `true` if the password was changed, `false` if the user is unknown or the old password is wrong.',
            content: json(jsonSchema(z.boolean(), 'output')),
          },
          ...errors(400, TMC_401, 413, 415, 503),
          ...DEFAULT,
        },
      },
    },
    [`${base}/users-by-upstream-id/{id}`]: {
      get: {
        operationId: 'tmcUserByUpstreamId',
        tags: ['tmc-server'],
        summary: "The user for a TMC id, created from TMC's data (without a password) if missing",
        security: TMC_AUTH,
        parameters: [upstreamIdParameter],
        responses: {
          200: { description: 'The user.', content: json(ref('User')) },
          ...errors([400, 'The id is not a 32-bit integer.'], TMC_401, [404, 'TMC does not know the user.'], 502, 503, 504),
          ...DEFAULT,
        },
      },
    },
    [`${base}/users-by-upstream-id/{id}/status`]: {
      get: {
        operationId: 'tmcUpstreamIdStatus',
        tags: ['tmc-server'],
        summary: "Read-only status for TMC's admin UI",
        description: 'Never calls TMC and never creates anything.',
        security: TMC_AUTH,
        parameters: [upstreamIdParameter],
        responses: {
          200: { description: 'The status.', content: json(ref('UpstreamStatus')) },
          ...errors([400, 'The id is not a 32-bit integer.'], TMC_401, 503),
          ...DEFAULT,
        },
      },
    },
  };
}

const VERIFICATION_SENT: Record<string, Response> = {
  202: { description: 'Accepted: a verification email is (or was recently) on its way.', content: json(ref('VerificationSent')) },
};

/** A JSON answer of the verify endpoints, or the page browsers get. */
function verifyAnswer(status: 'active' | 'activating' | 'confirmation_required', description: string): Response {
  const fields = status === 'confirmation_required' ? { status: z.literal(status) } : { status: z.literal(status), user_id: uuid };
  return {
    description,
    content: {
      'application/json': { schema: jsonSchema(z.strictObject(fields), 'output') },
      'text/html': { schema: { type: 'string' } },
    },
  };
}

/** An error JSON, or the page browsers get for it. */
function errorOrPage(status: number, description: string): Record<string, Response> {
  return { [String(status)]: { description, content: { ...json(ref('Error')), 'text/html': { schema: { type: 'string' } } } } };
}

const PAGES_NOTE =
  'Browsers get HTML pages (a GET that does not prefer JSON, and the pages\' own form posts, `application/x-www-form-urlencoded`); `Accept: application/json` gets JSON. Pages carry a strict Content-Security-Policy and `Referrer-Policy: no-referrer`.';

function signupPaths(): Record<string, PathItem> {
  const form = (schema: z.ZodType) => ({
    required: true,
    content: { ...json(jsonSchema(schema, 'input')), 'application/x-www-form-urlencoded': { schema: jsonSchema(schema, 'input') } },
  });
  return {
    '/api/v0/signups': {
      post: {
        operationId: 'createSignup',
        tags: ['signups'],
        summary: 'Start (or resume) a signup and email a verification link',
        description:
          "A pending signup for the same email (trimmed, lower-cased) is resumed: this attempt's password and name go with the next link (which a resend interval may hold back). Activation needs a confirmation through a link, with a password the link's holder types. An active account for the email gets the same 202 (and a notice by mail), unless SIGNUP_REVEAL_EXISTING=true (409 `already_exists`). New, pending and active addresses take the same time (one argon2 hash each).",
        requestBody: body(signupRequest),
        responses: {
          ...VERIFICATION_SENT,
          ...errors(
            400,
            [409, '`already_exists`: the email has an active account (only with SIGNUP_REVEAL_EXISTING=true).'],
            413,
            415,
            [422, '`tenant_not_active`: unknown or suspended tenant.'],
            503,
          ),
          ...RATE_LIMITED,
          ...DEFAULT,
        },
      },
    },
    '/api/v0/signups/verify': {
      get: {
        operationId: 'showSignupLink',
        tags: ['signups'],
        summary: 'The link in the verification email: shows the confirmation, changes nothing',
        description: `GET and HEAD never change state: mail scanners and link previews open links too. ${PAGES_NOTE}`,
        parameters: [
          {
            name: 'token',
            in: 'query',
            required: true,
            description: 'The token from the email: 32 random bytes, base64url.',
            schema: jsonSchema(z.string().regex(TOKEN_FORMAT), 'input'),
          },
          { name: 'choose', in: 'query', required: false, description: '`new`: the page offers the new-password form only.', schema: { type: 'string', enum: ['new'] } },
          { name: 'tenant', in: 'query', required: false, description: 'The tenant the invalid-link page offers a new link for, when the token is unknown.', schema: { type: 'string' } },
        ],
        responses: {
          200: {
            description: 'Pending: `{"status":"confirmation_required"}` (the page has the confirm form); or active: `{"status":"active","user_id"}`.',
            content: {
              'application/json': {
                schema: jsonSchema(z.union([z.strictObject({ status: z.literal('confirmation_required') }), z.strictObject({ status: z.literal('active'), user_id: uuid })]), 'output'),
              },
              'text/html': { schema: { type: 'string' } },
            },
          },
          202: verifyAnswer('activating', 'Confirmed; the user is still being activated.'),
          ...errorOrPage(410, 'The token is unknown, replaced by a newer link, or expired (one message for all). The page offers a form for a new link.'),
          ...errorOrPage(503, ERROR_DESCRIPTIONS[503]!),
          ...RATE_LIMITED,
          ...DEFAULT,
        },
      },
      post: {
        operationId: 'confirmSignup',
        tags: ['signups'],
        summary: 'Confirm a signup with its password, or a new one, and activate it',
        description: `\`{"token","password"}\`: the password must match the one chosen in the signup attempt whose mail carried the token. \`{"token","new_password"}\`: the holder of the link sets the password. Either way the account is activated with a password the link's holder typed. Repeating a confirmation is safe. ${PAGES_NOTE}`,
        requestBody: form(confirmRequest),
        responses: {
          200: verifyAnswer('active', 'The user is active (now, or already before this request, which then changed nothing).'),
          202: verifyAnswer('activating', 'Confirmed; the user is still being activated.'),
          ...errorOrPage(400, ERROR_DESCRIPTIONS[400]!),
          ...errorOrPage(403, 'The password does not match the one chosen for this signup. Nothing was changed; the page offers to choose a new password.'),
          ...errorOrPage(410, 'The token is unknown, replaced by a newer link, or expired.'),
          ...errors(413, [415, 'The body is neither JSON nor a form.']),
          ...errorOrPage(503, ERROR_DESCRIPTIONS[503]!),
          ...RATE_LIMITED,
          ...DEFAULT,
        },
      },
    },
    '/api/v0/signups/resend': {
      post: {
        operationId: 'resendSignup',
        tags: ['signups'],
        summary: 'A fresh verification link for a pending signup, throttled',
        description: `Always 202 for valid input, whether or not a signup is pending; a mail goes out only if the last one is older than SIGNUP_RESEND_INTERVAL. ${PAGES_NOTE}`,
        requestBody: form(resendRequest),
        responses: { ...VERIFICATION_SENT, ...errorOrPage(400, ERROR_DESCRIPTIONS[400]!), ...errors(413, 415), ...errorOrPage(503, ERROR_DESCRIPTIONS[503]!), ...RATE_LIMITED, ...DEFAULT },
      },
    },
  };
}

function operationsPaths(): Record<string, PathItem> {
  return {
    '/healthz': {
      get: {
        operationId: 'healthz',
        tags: ['operations'],
        summary: 'Liveness: the process can serve (its dependencies may be down: see /readyz)',
        responses: {
          200: { description: 'Alive.', content: json(jsonSchema(z.strictObject({ status: z.literal('ok') }), 'output')) },
          ...errors([503, 'Wedged: a database query has waited far past the bound every query has; restart the process.']),
          ...DEFAULT,
        },
      },
    },
    '/readyz': {
      get: {
        operationId: 'readyz',
        tags: ['operations'],
        summary: 'Readiness: PostgreSQL and Temporal both answer (within 2 s each)',
        responses: {
          200: {
            description: 'Ready.',
            content: json(jsonSchema(z.strictObject({ status: z.literal('ready'), checks: checksSchema }), 'output')),
          },
          ...errors([503, 'Not ready; `data.checks` names the dependency that does not answer.']),
          ...DEFAULT,
        },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        tags: ['operations'],
        summary: 'Prometheus metrics of this process',
        responses: {
          200: { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } } } },
          ...DEFAULT,
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        tags: ['operations'],
        summary: 'This document',
        responses: {
          200: { description: 'The OpenAPI 3.1 document.', content: json({ type: 'object' }) },
          ...DEFAULT,
        },
      },
    },
  };
}

const CORS_HEADERS: Response['headers'] = Object.fromEntries(
  [
    ['Access-Control-Allow-Origin', 'The request\'s Origin, when it is in CODEC_CORS_ORIGINS.'],
    ['Access-Control-Allow-Credentials', '`true`'],
    ['Access-Control-Allow-Methods', '`POST, OPTIONS`'],
    ['Access-Control-Allow-Headers', '`Content-Type, X-Namespace, Authorization`'],
    ['Access-Control-Max-Age', '`600`'],
  ].map(([name, description]) => [name, { description: description!, schema: { type: 'string' } }]),
);

function codecPaths(): Record<string, PathItem> {
  const paths: Record<string, PathItem> = {};
  const tokenParameter = {
    name: 'token',
    in: 'path',
    required: true,
    description: 'CODEC_AUTH_TOKEN, for clients (the Temporal UI) that cannot send an Authorization header.',
    schema: { type: 'string' },
  };
  for (const direction of ['encode', 'decode'] as const) {
    const Direction = direction === 'encode' ? 'Encode' : 'Decode';
    for (const withToken of [false, true]) {
      const path = withToken ? `/codec/{token}/${direction}` : `/codec/${direction}`;
      const parameters = withToken ? [tokenParameter] : undefined;
      paths[path] = {
        post: {
          operationId: `codec${Direction}${withToken ? 'WithPathToken' : ''}`,
          tags: ['codec'],
          summary: `${Direction} Temporal payloads (the Temporal UI's remote codec endpoint)`,
          description: withToken
            ? 'The token is taken from the path; an Authorization header is ignored.'
            : 'The token is sent as `Authorization: Bearer <CODEC_AUTH_TOKEN>`.',
          security: withToken ? [] : [{ codecToken: [] }],
          ...(parameters ? { parameters } : {}),
          requestBody: body(payloadsBody),
          responses: {
            200: { description: `The ${direction}d payloads, in order.`, content: json(ref('Payloads')) },
            ...errors(
              [400, `Invalid payloads, or payloads that could not be ${direction}d.`],
              [401, 'A valid codec token is required.'],
              413,
              415,
            ),
            ...DEFAULT,
          },
        },
        options: {
          operationId: `codec${Direction}${withToken ? 'WithPathToken' : ''}Preflight`,
          tags: ['codec'],
          summary: 'CORS preflight',
          description:
            'Answers 204 without a body and without checking the token. For an Origin in CODEC_CORS_ORIGINS the answer carries the Access-Control-* headers; for any other origin it carries none.',
          security: [],
          ...(parameters ? { parameters } : {}),
          responses: { 204: { description: 'Preflight answer.', headers: CORS_HEADERS } },
        },
      };
    }
  }
  return paths;
}

/** The document. The codec paths are listed only when they are served (CODEC_AUTH_TOKEN set). */
export function openApiDocument(options: { codec: boolean }) {
  return {
    openapi: '3.1.1',
    info: {
      title: 'tmc-durable-accounts',
      version: '0.1.0',
      description:
        "A durable account service: a drop-in replacement for headless-lms's TMC user endpoints (`/api/v0/tmc-server/…`) and self-service signup with email verification. Every response carries the request's id in both `X-Request-Id` and `request-id` (as headless-lms sends it); a valid incoming `X-Request-Id`, else `request-id`, is reused. Every error, whatever the status, has the `Error` shape, except 429 (`RateLimited`).",
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    tags: [
      { name: 'tmc-server', description: 'The calls the TMC server makes, authorized by the shared secret.' },
      { name: 'signups', description: 'Self-service signup with email verification. Public.' },
      { name: 'operations', description: 'Health, readiness, metrics, and this document.' },
      ...(options.codec ? [{ name: 'codec', description: 'Remote payload codec for the Temporal UI.' }] : []),
    ],
    paths: {
      ...tmcServerPaths(),
      ...signupPaths(),
      ...operationsPaths(),
      ...(options.codec ? codecPaths() : {}),
    },
    components: {
      schemas: {
        User: jsonSchema(userSchema, 'output'),
        CreateUserResponse: jsonSchema(createUserResponseSchema, 'output'),
        UpstreamStatus: jsonSchema(upstreamStatusSchema, 'output'),
        Error: jsonSchema(errorSchema, 'output'),
        RateLimited: jsonSchema(rateLimitedSchema, 'output'),
        VerificationSent: jsonSchema(verificationSentSchema, 'output'),
        ...(options.codec ? { Payloads: jsonSchema(payloadsResponseSchema, 'output') } : {}),
      },
      securitySchemes: {
        tmcSharedSecret: {
          type: 'apiKey',
          in: 'header',
          name: 'Authorization',
          description:
            'The shared secret (TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT) as the raw Authorization header value, without a scheme.',
        },
        ...(options.codec
          ? { codecToken: { type: 'http', scheme: 'bearer', description: 'CODEC_AUTH_TOKEN, as `Authorization: Bearer <token>`.' } }
          : {}),
      },
    },
  };
}

/** GET `/openapi.json`. */
export function openApiRoutes({ config }: { config: Config }): Router {
  const document = openApiDocument({ codec: Boolean(config.codec.authToken) });
  const router = new Router();
  router.get('/openapi.json', (ctx) => {
    ctx.body = document;
  });
  return router;
}
