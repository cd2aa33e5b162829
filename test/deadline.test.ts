/**
 * The overall deadline of the signup routes (src/api/deadline.ts): a handler stuck on anything
 * still gets its caller an answer, 503 with the error JSON and Retry-After, on time; and a
 * handler that ends after that answer neither crashes the process nor changes the answer.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import Router from '@koa/router';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerWithin } from '../src/api/deadline';
import { ApiError, errorHandler } from '../src/api/errors';
import { createLogger } from '../src/logger';

const lines: string[] = [];
const log = createLogger('info', { write: (l: string) => void lines.push(l) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let url: string;
let server: ReturnType<Koa['listen']>;
const finishedLate: string[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  const router = new Router();
  router.use(answerWithin(300, log));
  router.get('/fast', (ctx) => {
    ctx.body = { ok: true };
  });
  router.get('/slow', async (ctx) => {
    await sleep(800);
    finishedLate.push('slow');
    ctx.status = 202;
    ctx.body = { late: true };
  });
  router.get('/slow-fail', async () => {
    await sleep(800);
    finishedLate.push('slow-fail');
    throw new Error('gave up after the answer');
  });
  router.get('/own-503', () => {
    throw new ApiError(503, 'The database is unavailable.');
  });
  const app = new Koa();
  app.use(errorHandler(log));
  app.use(router.routes());
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
  server?.close();
});

describe('a route with an overall deadline', () => {
  it('answers a fast handler as usual', async () => {
    const res = await fetch(`${url}/fast`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });

  it('answers 503 with the error JSON and Retry-After at the deadline, not when the handler ends', async () => {
    const started = Date.now();
    const res = await fetch(`${url}/slow`);
    const took = Date.now() - started;
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toEqual({ title: 'Service Unavailable', message: 'The service is busy; try again shortly.', source: null, data: null });
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(700);
    // The handler runs to its end afterwards, and that is logged.
    await sleep(700);
    expect(finishedLate).toContain('slow');
    expect(lines.join('')).toContain('request finished after its deadline had been answered');
  });

  it('survives a handler that fails after the answer, without an unhandled rejection', async () => {
    const res = await fetch(`${url}/slow-fail`);
    expect(res.status).toBe(503);
    await sleep(800);
    expect(finishedLate).toContain('slow-fail');
    expect(lines.join('')).toContain('request failed after its deadline had been answered');
    expect(unhandled).toEqual([]);
  });

  it("keeps a handler's own 503 and its message (with the Retry-After every 503 carries)", async () => {
    const res = await fetch(`${url}/own-503`);
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await res.json()) as { message: string }).message).toBe('The database is unavailable.');
  });
});
