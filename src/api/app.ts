/**
 * The Koa application: request ids and access logs, the one error handler, the strict JSON
 * body parser, and the routers. Built from explicit dependencies so tests can run several at once.
 */
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import Koa, { type Context, type Next } from 'koa';
import type { Client } from '@temporalio/client';
import type { Config } from '../config';
import { stuckQuery, type Db } from '../db';
import type { Logger } from '../logger';
import type { TmcClient } from '../tmc';
import { defaultHashConcurrency, HashQueue } from '../hashing';
import { httpDuration, httpRequests, registry } from '../metrics';
import { REQUEST_ID_HEADER, withRequestId } from '../requestContext';
import { ApiError, errorBody, errorHandler } from './errors';
import type { PayloadCodec } from '@temporalio/common';
import { codecRoutes } from './codec';
import { jsonBodyParser } from './jsonBody';
import { openApiRoutes } from './openapi';
import { rateLimits } from './rateLimit';
import { signupRoutes } from './signups';
import { tmcServerRoutes } from './tmcServer';

export interface AppDeps {
  config: Config;
  db: Db;
  temporal: Client;
  tmc: TmcClient;
  log: Logger;
  /** The payload codec, for the Temporal UI's codec endpoints. */
  codec: PayloadCodec;
  /**
   * Set when the process is stopping: `shuttingDown` from the start (readiness fails), `closing`
   * once the listener is closed (connections are no longer kept alive).
   */
  lifecycle?: { shuttingDown: boolean; closing?: boolean };
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The request's id: a valid incoming `X-Request-Id`, else a valid `request-id` (the header
 * headless-lms uses), else a new UUID. Sent back in both headers on every response: tmc-server
 * logs `request-id` on every failed call.
 */
function requestContext(log: Logger) {
  return async (ctx: Context, next: Next) => {
    const incoming = [ctx.get('x-request-id'), ctx.get(REQUEST_ID_HEADER)].find((id) => REQUEST_ID.test(id));
    const requestId = incoming ?? randomUUID();
    ctx.state.requestId = requestId;
    // Deadlines count from here (src/hashing.ts, the TMC routes), and work for a caller that has
    // closed its connection before its answer is dropped.
    ctx.state.arrivedAt = Date.now();
    const callerGone = new AbortController();
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) callerGone.abort();
    });
    ctx.state.callerGone = callerGone.signal;
    ctx.set('X-Request-Id', requestId);
    ctx.set(REQUEST_ID_HEADER, requestId);
    const started = process.hrtime.bigint();
    try {
      await withRequestId(requestId, next);
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      // The route pattern, never the raw path: paths can carry tokens (/codec/<token>/…).
      const route = typeof ctx._matchedRoute === 'string' ? ctx._matchedRoute : 'unmatched';
      const labels = { method: ctx.method, route, status: String(ctx.status) };
      httpRequests.inc(labels);
      httpDuration.observe(labels, ms / 1000);
      log.info({ requestId, method: ctx.method, route, status: ctx.status, ms: Math.round(ms * 10) / 10 }, 'request');
    }
  };
}

/** The routers each app made by createApp serves, in order (test/openapi.test.ts compares them with the OpenAPI document). */
export const appRouters = new WeakMap<Koa, Router[]>();

export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  // Behind N reverse proxies, ctx.ip is the Nth X-Forwarded-For entry from the right: the last
  // hop no trusted proxy added (Koa's proxy + maxIpsCount keep only the rightmost N entries, and
  // ctx.ip is the first of those). What the client put to the left of it is ignored.
  app.proxy = deps.config.http.trustedProxyCount > 0;
  app.maxIpsCount = deps.config.http.trustedProxyCount;
  app.silent = true;

  const health = new Router();
  /**
   * GET `/healthz`: liveness. 200 while the process can serve, whatever its dependencies do
   * (their outages are /readyz's business and answer 503 quickly); 503 once it is wedged: a
   * database query waiting far past the bound every query has (src/db/index.ts).
   */
  health.get('/healthz', (ctx) => {
    const stuck = stuckQuery(deps.db);
    if (stuck) {
      ctx.status = 503;
      ctx.body = errorBody(503, `Not live: a database query has waited ${Math.round(stuck.ageMs / 1000)} s (bound ${Math.round(stuck.boundMs / 1000)} s).`, null);
      return;
    }
    ctx.body = { status: 'ok' };
  });
  /** GET `/readyz`: 200 only while PostgreSQL and Temporal both answer; 503 names the one that does not. */
  health.get('/readyz', async (ctx) => {
    if (deps.lifecycle?.shuttingDown) {
      ctx.status = 503;
      ctx.body = errorBody(503, 'Not ready: shutting down.', null);
      return;
    }
    const checks = await readiness(deps);
    const failed = Object.entries(checks).filter(([, v]) => v !== 'ok').map(([k]) => k);
    if (failed.length === 0) {
      ctx.body = { status: 'ready', checks };
      return;
    }
    ctx.status = 503;
    ctx.body = errorBody(503, `Not ready: ${failed.join(' and ')} unavailable.`, { checks });
  });
  /** GET `/metrics`: Prometheus metrics of this process. */
  health.get('/metrics', async (ctx) => {
    ctx.set('Content-Type', registry.contentType);
    ctx.body = await registry.metrics();
  });

  // One queue for every password hash and verification this app runs (src/hashing.ts).
  const hashes = new HashQueue({ concurrency: deps.config.hashing.concurrency ?? defaultHashConcurrency(), maxQueued: deps.config.hashing.maxQueued });
  const tmcServer = tmcServerRoutes({ ...deps, hashes });
  const signups = signupRoutes({ ...deps, hashes });
  // The codec endpoints exist only when a token guards them.
  const codec = deps.config.codec.authToken
    ? [codecRoutes({ codec: deps.codec, authToken: deps.config.codec.authToken, corsOrigins: deps.config.codec.corsOrigins })]
    : [];

  app.use(requestContext(deps.log));
  app.use(async (ctx, next) => {
    // Once the listener is closed, every answer closes its connection, so no client reuses a
    // socket that is about to go away (which is how keep-alive clients get connection resets).
    // Not earlier: during the drain, kept-alive sockets spare clients new connections, and a
    // connection the kernel has completed but Node not yet accepted when the listener closes is
    // reset (a shutdown test saw one such reset with Connection: close during the drain).
    if (deps.lifecycle?.closing) ctx.set('Connection', 'close');
    await next();
  });
  app.use(errorHandler(deps.log));
  app.use(async (ctx, next) => {
    // Compressed request bodies are not accepted: nothing that calls this API sends them, and
    // a broken one would otherwise fail inside zlib.
    const encoding = ctx.get('content-encoding').trim().toLowerCase();
    if (encoding !== '' && encoding !== 'identity') throw new ApiError(415, 'Compressed request bodies are not accepted.');
    await next();
  });
  // Paths under /api/ are matched as written. @koa/router matches a route in any letter case but
  // a router's own middleware (router.use: TMC's shared-secret check, the signup pages' deadline)
  // only as written, so /API/V0/TMC-SERVER/users/authenticate reached its handler without the
  // secret. Every path under /api/ is lower-case (its only parameter is a number): others are 404.
  app.use(async (ctx, next) => {
    const lower = ctx.path.toLowerCase();
    if (lower.startsWith('/api/') && ctx.path !== lower) throw new ApiError(404, `No route for ${ctx.method} ${ctx.path}.`);
    await next();
  });
  // Strict bodies, as headless-lms parses them: duplicate keys and lone surrogates are a 400.
  // Forms (urlencoded) too, for the signup pages' own forms (verify, resend).
  app.use(jsonBodyParser({ limit: deps.config.http.maxBodyBytes }));
  if (!deps.config.rateLimit.disabled) {
    app.use(rateLimits({ db: deps.db, log: deps.log, tmcSecret: deps.config.tmc.sharedSecret, exemptTmc: deps.config.rateLimit.exemptTmc }));
  }
  const routers = [health, tmcServer, signups, ...codec, openApiRoutes(deps)];
  appRouters.set(app, routers);
  for (const router of routers) {
    app.use(router.routes());
    app.use(
      router.allowedMethods({
        throw: true,
        methodNotAllowed: () => new ApiError(405, 'Method not allowed.'),
        notImplemented: () => new ApiError(405, 'Method not allowed.'),
      }),
    );
  }
  return app;
}

/** Each dependency answers within 2 s, or counts as unavailable. */
async function readiness({ db, temporal }: AppDeps): Promise<Record<'postgres' | 'temporal', 'ok' | 'unavailable'>> {
  const within = <T>(p: Promise<T>) =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 2_000).unref())]);
  const [postgres, temporalCheck] = await Promise.allSettled([
    within(db.raw('select 1')),
    within(temporal.withDeadline(Date.now() + 2_000, () => temporal.workflowService.getSystemInfo({}))),
  ]);
  return {
    postgres: postgres.status === 'fulfilled' ? 'ok' : 'unavailable',
    temporal: temporalCheck.status === 'fulfilled' ? 'ok' : 'unavailable',
  };
}
