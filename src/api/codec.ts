/*!
 * The remote codec endpoints the Temporal UI (and `temporal --codec-endpoint`) call to show
 * encrypted payloads in clear: `POST /codec/decode` and `POST /codec/encode`, body and answer
 * `{"payloads":[{"metadata":{k: base64}, "data": base64}]}`.
 *
 * Guarded by CODEC_AUTH_TOKEN, sent either as `Authorization: Bearer <token>` or in the path
 * (`/codec/<token>/decode`), because the UI, configured with a plain endpoint URL, sends no
 * credentials of its own. CORS lets the UI's origins call it from the browser.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { z } from 'zod';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { ApiError } from './errors';
import { jsonBody, parse } from './validation';

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');
export const payloadsBody = z.object({
  payloads: z.array(z.object({ metadata: z.record(z.string(), base64).optional(), data: base64.optional() })).max(1000),
});

const fromB64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const toB64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

function toPayloads(body: z.infer<typeof payloadsBody>): Payload[] {
  return body.payloads.map((p) => ({
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, fromB64(v)])),
    data: p.data === undefined ? undefined : fromB64(p.data),
  }));
}

function fromPayloads(payloads: Payload[]) {
  return {
    payloads: payloads.map((p) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, toB64(v as Uint8Array)])),
      data: p.data ? toB64(p.data) : undefined,
    })),
  };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export function codecRoutes(options: { codec: PayloadCodec; authToken: string; corsOrigins: string[] }): Router {
  const expected = digest(options.authToken);
  const tokenMatches = (candidate: string | undefined) => candidate !== undefined && timingSafeEqual(digest(candidate), expected);

  async function cors(ctx: Context, next: Next) {
    const origin = ctx.get('origin');
    if (origin && options.corsOrigins.includes(origin)) {
      ctx.set('Access-Control-Allow-Origin', origin);
      ctx.set('Access-Control-Allow-Credentials', 'true');
      ctx.set('Vary', 'Origin');
      ctx.set('Access-Control-Allow-Methods', 'POST, OPTIONS');
      ctx.set('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
      ctx.set('Access-Control-Max-Age', '600');
    }
    if (ctx.method === 'OPTIONS') {
      ctx.status = 204;
      return;
    }
    await next();
  }

  function authorize(ctx: Context) {
    const header = ctx.get('authorization');
    const bearer = header.startsWith('Bearer ') ? header.slice(7) : undefined;
    if (!tokenMatches(ctx.params.token ?? bearer)) throw new ApiError(401, 'A valid codec token is required.');
  }

  const handle = (direction: 'encode' | 'decode') => async (ctx: Context) => {
    authorize(ctx);
    const body = parse(payloadsBody, jsonBody(ctx));
    let result: Payload[];
    try {
      result = await options.codec[direction](toPayloads(body));
    } catch {
      throw new ApiError(400, `The payloads could not be ${direction}d.`);
    }
    ctx.body = fromPayloads(result);
  };

  const router = new Router({ prefix: '/codec' });
  router.use(cors);
  for (const direction of ['encode', 'decode'] as const) {
    router.post(`/${direction}`, handle(direction));
    router.post(`/:token/${direction}`, handle(direction));
    router.options(`/${direction}`, () => undefined);
    router.options(`/:token/${direction}`, () => undefined);
  }
  return router;
}
