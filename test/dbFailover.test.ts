/**
 * A database failover as the service sees it (issue 14, section 5): a TCP proxy between the
 * service and PostgreSQL stops forwarding without closing anything, so every pooled connection
 * hangs. Every call is still answered in bounded time, the service recovers by itself soon after
 * the database answers again (the old connections stay dead), and liveness fails only when the
 * process itself is wedged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi } from '../src/api/main';
import { createDb } from '../src/db';
import { resolveKeys } from '../src/temporal/codec';
import { createDatabase, startHarness, type Harness } from './support/harness';
import { TcpProxy } from './support/tcpProxy';

let h: Harness;
let proxy: TcpProxy;

/** The database URL, through `proxy`. */
function through(p: TcpProxy, url: string): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(p.port);
  return u.toString();
}

let databaseUrl: string;
beforeAll(async () => {
  databaseUrl = await createDatabase();
  const u = new URL(databaseUrl);
  proxy = await new TcpProxy({ host: u.hostname, port: Number(u.port) }).start();
  h = await startHarness({ databaseUrl: through(proxy, databaseUrl), worker: false });
});
afterAll(async () => {
  await h?.close();
  await proxy?.stop();
});

/** A call that only needs PostgreSQL; its status (or 'no answer') and how long it took. */
async function statusCall(api: string, timeoutMs: number): Promise<{ status: number | 'no answer'; ms: number; retryAfter: string | null }> {
  const started = Date.now();
  try {
    const res = await fetch(`${api}/api/v0/tmc-server/users-by-upstream-id/4242/status`, {
      headers: { authorization: 'test-shared-secret' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.text();
    return { status: res.status, ms: Date.now() - started, retryAfter: res.headers.get('retry-after') };
  } catch {
    return { status: 'no answer', ms: Date.now() - started, retryAfter: null };
  }
}

describe('a database failover that black-holes the pooled connections', () => {
  it('answers every call within TMC\'s 10 s, recovers within 30 s of the database answering again, and stays live', async () => {
    // Warm the pool: ten connections open and idle, as in a running service.
    const warm = await Promise.all(Array.from({ length: 10 }, () => statusCall(h.api.url, 10_000)));
    expect(warm.map((r) => r.status)).toEqual(Array(10).fill(200));

    proxy.blackHole();
    const during = await Promise.all(Array.from({ length: 12 }, () => statusCall(h.api.url, 20_000)));
    for (const r of during) {
      expect(r.status, `${JSON.stringify(during)}\n${[...new Set(h.logLines.filter((l) => l.includes('request failed')).map((l) => JSON.parse(l).err.message.slice(-120)))].join('\n')}`).toBe(503);
      expect(r.ms).toBeLessThan(10_000);
      expect(r.retryAfter).toMatch(/^\d+$/);
    }
    console.log(`database failover: ${during.length} calls during the outage answered 503 in ${Math.min(...during.map((r) => r.ms))}–${Math.max(...during.map((r) => r.ms))} ms`);
    // Dependencies failing fast is not a dead process.
    expect((await fetch(`${h.api.url}/healthz`)).status).toBe(200);

    // The database answers again (new connections reach it); the black-holed ones stay dead.
    proxy.restore();
    const restored = Date.now();
    let recoveredAfter: number | undefined;
    while (Date.now() - restored < 40_000) {
      const r = await statusCall(h.api.url, 15_000);
      if (r.status === 200) {
        recoveredAfter = Date.now() - restored;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(recoveredAfter, 'no 200 within 40 s of the database answering again').toBeDefined();
    console.log(`database failover: recovered ${recoveredAfter} ms after the database answered again`);
    expect(recoveredAfter!).toBeLessThan(30_000);
    // And it stays recovered: a burst larger than the pool all succeeds.
    const after = await Promise.all(Array.from({ length: 25 }, () => statusCall(h.api.url, 15_000)));
    expect(after.map((r) => r.status)).toEqual(Array(25).fill(200));
  }, 120_000);

  it('fails liveness when a query waits far past its bound (the process is wedged)', async () => {
    const u = new URL(databaseUrl);
    const proxy2 = await new TcpProxy({ host: u.hostname, port: Number(u.port) }).start();
    // Timeouts that will not fire during the test, and a liveness bound of 2 s.
    const db = createDb({ url: through(proxy2, databaseUrl), queryTimeoutMs: 60_000, stuckAfterMs: 2_000 });
    const api = await startApi(h.config, { db, log: h.log, keys: resolveKeys(h.config, h.log), port: 0 });
    try {
      expect((await statusCall(api.url, 10_000)).status).toBe(200);
      expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
      proxy2.blackHole();
      void statusCall(api.url, 5_000);
      await new Promise((r) => setTimeout(r, 3_000));
      const live = await fetch(`${api.url}/healthz`);
      expect(live.status).toBe(503);
      expect(await live.json()).toMatchObject({ title: 'Service Unavailable', message: expect.stringMatching(/database query has waited/) });
    } finally {
      // Closing the proxy's sockets fails the stuck query, so the pool can close.
      await proxy2.stop();
      await api.close();
      await db.destroy();
    }
  }, 60_000);
});
