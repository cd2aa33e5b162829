/**
 * The production shape on a real Temporal cluster (issue 14, section 2): Temporal v1.29.1 on
 * PostgreSQL with SQL visibility and mTLS on its frontend; the service built with `npm run
 * build` and run from its production entry points (`node dist/worker.js` twice and `node
 * dist/api/main.js` twice: what `start:worker` and `start:api` run), all four started at once on
 * an empty database, connected with Temporal's environment variables only.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type RunningPostgres } from '../../src/dev/postgres';
import { freePort } from '../../src/dev/ports';
import { dataConverter, parseKeys } from '../../src/temporal/codec';
import { connectClient } from '../../src/temporal/connection';
import { WORKER_NODE_FLAGS } from '../../src/worker';
import { signupWorkflowId } from '../../src/workflows/shared';
import { makeTestPki, type TestPki } from '../support/certs';
import { FakeTmc } from '../support/fakeTmc';
import { eventually, SECRET, serviceEnv } from '../support/serviceEnv';
import { SmtpCapture } from '../support/smtpCapture';
import { ROOT, setupSchemas, startCluster, type RunningCluster } from './temporalCluster';

const run = promisify(execFile);
const started = Date.now();
let dir: string;
let pki: TestPki;
let pg: RunningPostgres;
let cluster: RunningCluster;
let tmc: FakeTmc;
let mail: SmtpCapture;
let client: Client;
let baseEnv: Record<string, string>;
const timings: Record<string, number> = {};

/** One service process (a worker or an API), with its output kept for messages. */
class Service {
  proc!: ChildProcess;
  output: string[] = [];
  constructor(
    readonly kind: 'worker' | 'api',
    readonly env: Record<string, string>,
  ) {}
  start(): this {
    const entry = this.kind === 'worker' ? 'dist/worker.js' : 'dist/api/main.js';
    this.output = [];
    this.proc = spawn(process.execPath, [...(this.kind === 'worker' ? WORKER_NODE_FLAGS : []), entry], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ...this.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (c) => this.output.push(String(c)));
    this.proc.stderr!.on('data', (c) => this.output.push(String(c)));
    return this;
  }
  get text(): string {
    return this.output.join('');
  }
  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (!this.running) return this.proc.exitCode;
    const exited = once(this.proc, 'exit') as Promise<[number | null]>;
    this.proc.kill(signal);
    return (await exited)[0];
  }
}

const workers: Service[] = [];
const apis: Service[] = [];

/** Sends each call to a replica whose last /readyz was 200, as a load balancer does. */
class Balancer {
  ready = new Set<Service>();
  private timer?: NodeJS.Timeout;
  private next = 0;
  start() {
    const poll = async () => {
      await Promise.all(
        apis.map(async (api) => {
          try {
            const r = await fetch(`${api.env.PUBLIC_BASE_URL}/readyz`, { signal: AbortSignal.timeout(2_000) });
            if (r.status === 200) this.ready.add(api);
            else this.ready.delete(api);
          } catch {
            this.ready.delete(api);
          }
        }),
      );
      this.timer = setTimeout(poll, 250);
    };
    void poll();
    return this;
  }
  stop() {
    clearTimeout(this.timer);
  }
  pick(): Service {
    const ready = apis.filter((a) => this.ready.has(a));
    const pool = ready.length ? ready : apis;
    return pool[this.next++ % pool.length]!;
  }
}
let lb: Balancer;

interface Answer {
  status: number | 'network error';
  retryAfter: string | null;
  body: unknown;
  error?: string;
}

async function call(method: string, pathAndQuery: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const api = lb.pick();
  try {
    const res = await fetch(`${api.env.PUBLIC_BASE_URL}${pathAndQuery}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // HTML pages
    }
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: parsed };
  } catch (err) {
    return { status: 'network error', retryAfter: null, body: null, error: `${api.env.PORT}: ${(err as Error).message}` };
  }
}

/** Repeats a call answered 503 (honouring Retry-After) until it gets another answer, for up to 90 s. */
async function untilServed(stats: { unavailable: number; activating?: number }, make: () => Promise<Answer>): Promise<Answer> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const a = await make();
    if (a.status !== 503 || Date.now() > deadline) return a;
    expect(a.retryAfter, 'a 503 without Retry-After').toMatch(/^\d+$/);
    stats.unavailable++;
    await new Promise((r) => setTimeout(r, Number(a.retryAfter) * 1_000));
  }
}

beforeAll(async () => {
  const t = () => Math.round((Date.now() - started) / 1000);
  dir = mkdtempSync(path.join(tmpdir(), 'accounts-cluster-'));
  pki = makeTestPki(path.join(dir, 'pki'));
  const buildDone = run('npm', ['run', 'build'], { cwd: ROOT, timeout: 300_000 });
  pg = await startEmbeddedPostgres();
  await setupSchemas({ host: '127.0.0.1', port: pg.port, user: 'postgres', password: 'postgres' });
  cluster = await startCluster({ dir: path.join(dir, 'temporal'), pg: { host: '127.0.0.1', port: pg.port, user: 'postgres', password: 'postgres' }, pki });
  timings.cluster = t();
  await buildDone;
  timings.build = t();

  tmc = await new FakeTmc().start();
  mail = await new SmtpCapture().start();
  const databaseUrl = await pg.createDatabase('accounts');
  const keys = `k1:${randomBytes(32).toString('base64')}`;
  baseEnv = {
    ...serviceEnv({ name: 'test', databaseUrl, temporalAddress: cluster.address, tmcUrl: tmc.url, smtpUrl: mail.url, port: 0 }),
    ...cluster.clientEnv,
    NODE_ENV: 'production',
    PAYLOAD_ENCRYPTION_KEYS: keys,
    TEMPORAL_TASK_QUEUE: 'accounts',
  };
  client = new Client({ connection: await connectClient(cluster.connection), namespace: 'default', dataConverter: dataConverter(parseKeys(keys)) });

  // All four at once on an empty database, as an orchestrator starts them.
  for (let i = 0; i < 2; i++) {
    workers.push(new Service('worker', { ...baseEnv, WORKER_METRICS_PORT: String(await freePort()), TEMPORAL_SDK_METRICS_ADDRESS: `127.0.0.1:${await freePort()}` }));
    const port = await freePort();
    apis.push(new Service('api', { ...baseEnv, PORT: String(port), PUBLIC_BASE_URL: `http://127.0.0.1:${port}` }));
  }
  [...workers, ...apis].forEach((s) => s.start());
  for (const w of workers) {
    await eventually(() => w.text.includes('"worker started"') || !w.running, { timeoutMs: 180_000, intervalMs: 250, what: 'a worker to start' });
    expect(w.running, w.text.slice(-3000)).toBe(true);
  }
  lb = new Balancer().start();
  await eventually(() => lb.ready.size === 2 || apis.some((a) => !a.running), { timeoutMs: 60_000, intervalMs: 250, what: 'both APIs ready' });
  for (const a of apis) expect(a.running, a.text.slice(-3000)).toBe(true);
  timings.services = t();
}, 600_000);

afterAll(async () => {
  lb?.stop();
  for (const s of [...apis, ...workers]) if (s.proc && s.running) await s.stop('SIGKILL');
  await client?.connection.close().catch(() => undefined);
  await tmc?.stop();
  await mail?.stop();
  await cluster?.stop();
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  const total = Math.round((Date.now() - started) / 1000);
  console.log(`test:cluster took ${total} s (cluster up at ${timings.cluster} s, build done at ${timings.build} s, services up at ${timings.services} s)`);
}, 120_000);

describe('the service on a Temporal cluster with mTLS and PostgreSQL', () => {
  it('refuses to start a worker without the client certificate, saying why; an API says so at start and is not ready', async () => {
    const { TEMPORAL_TLS_CLIENT_CERT_PATH: _c, TEMPORAL_TLS_CLIENT_KEY_PATH: _k, ...withoutCert } = baseEnv;
    const noCert = new Service('worker', { ...withoutCert, WORKER_METRICS_PORT: String(await freePort()), TEMPORAL_SDK_METRICS_ADDRESS: `127.0.0.1:${await freePort()}` }).start();
    const [code] = (await Promise.race([once(noCert.proc, 'exit'), new Promise((r) => setTimeout(() => r(['timeout']), 90_000))])) as [number | string];
    if (code === 'timeout') await noCert.stop('SIGKILL');
    expect(code, noCert.text.slice(-2000)).toBe(1);
    expect(noCert.text).toMatch(/cannot connect to Temporal at 127\.0\.0\.1:\d+ \(namespace default, TLS\)/);
    expect(noCert.text).toMatch(/client certificate/i);
    expect(noCert.text).not.toContain('"worker started"');
    console.log(`worker without a client certificate: ${noCert.text.split('\n').filter((l) => l.includes('cannot connect')).join(' ').slice(0, 600)}`);

    // The API keeps serving (it answers 503 while Temporal is away) but logs the refusal at start.
    const port = await freePort();
    const api = new Service('api', { ...withoutCert, PORT: String(port), PUBLIC_BASE_URL: `http://127.0.0.1:${port}` }).start();
    try {
      await eventually(() => api.text.includes('cannot connect to Temporal at') || !api.running, { timeoutMs: 60_000, intervalMs: 250, what: 'the API to log the refused connection' });
      expect(api.text).toMatch(/cannot connect to Temporal at 127\.0\.0\.1:\d+ \(namespace default, TLS\).*TEMPORAL_TLS_CLIENT_CERT_PATH/);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ data: { checks: { postgres: 'ok', temporal: 'unavailable' } } });
    } finally {
      await api.stop('SIGKILL');
    }
  }, 120_000);

  it('registers SignupState on the cluster, and finds a waiting signup by it', async () => {
    const { customAttributes } = await client.connection.operatorService.listSearchAttributes({ namespace: 'default' });
    expect(Object.keys(customAttributes ?? {})).toContain('SignupState');

    const stats = { unavailable: 0 };
    const answer = await untilServed(stats, () => call('POST', '/api/v0/signups', { tenant: 'default', email: 'waiting@example.org', display_name: 'Waiting', password: 'waiting password' }));
    expect(answer.status).toBe(202);
    const [row] = await (async () => {
      const pgClient = new (await import('pg')).default.Client({ connectionString: baseEnv.DATABASE_URL });
      await pgClient.connect();
      try {
        return (await pgClient.query('SELECT user_id FROM signups WHERE identifier = $1', ['waiting@example.org'])).rows as Array<{ user_id: string }>;
      } finally {
        await pgClient.end();
      }
    })();
    const workflowId = signupWorkflowId(row!.user_id);
    await eventually(
      async () => {
        for await (const wf of client.workflow.list({ query: `SignupState="AwaitingVerification" AND WorkflowId="${workflowId}"` })) return wf.workflowId === workflowId;
        return false;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: 'the signup in SQL visibility by SignupState' },
    );
  }, 120_000);

  it('completes 50 signups and 50 creates over both APIs while one worker is SIGKILLed', async () => {
    const stats = { unavailable: 0, activating: 0 };
    const ids = Array.from({ length: 50 }, (_, i) => 9001 + i);
    for (const id of ids) tmc.addUser({ id });
    let done = 0;
    const signup = async (i: number) => {
      const email = `load-${i}@example.org`;
      const a = await untilServed(stats, () => call('POST', '/api/v0/signups', { tenant: 'default', email, display_name: `Load ${i}`, password: `password number ${i}` }));
      expect(a.status, JSON.stringify(a)).toBe(202);
      const link = await eventually(() => mail.latestLink(email), { timeoutMs: 90_000, intervalMs: 250, what: `the mail to ${email}` });
      // The person confirms on the link's page with the password chosen at signup.
      const token = new URL(link).searchParams.get('token');
      const open = () => untilServed(stats, () => call('POST', '/api/v0/signups/verify', { token, password: `password number ${i}` }, { accept: 'application/json' }));
      let verify = await open();
      // 202 "activating": the confirmation was accepted, the activation is still on its way (a
      // worker died with it); confirming again answers 200 once the account is active.
      for (const until = Date.now() + 90_000; verify.status === 202 && Date.now() < until; verify = await open()) {
        stats.activating++;
        expect(verify.body).toMatchObject({ status: 'activating' });
        await new Promise((r) => setTimeout(r, 1_000));
      }
      expect(verify.status, JSON.stringify(verify)).toBe(200);
      expect(verify.body).toMatchObject({ status: 'active' });
      done++;
    };
    const create = async (id: number) => {
      const a = await untilServed(stats, () => call('POST', '/api/v0/tmc-server/users/create', { upstream_id: id, password: `tmc password ${id}` }, { authorization: SECRET }));
      expect(a.status, JSON.stringify(a)).toBe(200);
      done++;
    };
    const jobs = ids.flatMap((id, i) => [() => signup(i), () => create(id)]);
    let nextJob = 0;
    const lanes = Array.from({ length: 8 }, async () => {
      while (nextJob < jobs.length) await jobs[nextJob++]!();
    });
    // Mid-way, one worker dies without a chance to finish anything.
    await eventually(() => done >= 30, { timeoutMs: 180_000, intervalMs: 100, what: '30 operations done' });
    const killedAt = Date.now();
    await workers[0]!.stop('SIGKILL');
    await Promise.all(lanes);

    // Every TMC user was told, at least once; twice only where the killed worker's call had reached TMC.
    await eventually(() => ids.every((id) => tmc.notificationsFor(id).length >= 1), { timeoutMs: 120_000, intervalMs: 500, what: 'every TMC notification delivered' });
    const twice = ids.filter((id) => tmc.notificationsFor(id).length > 1);
    for (const id of twice) {
      // The first delivery reached TMC before the kill: the killed worker's call, whose answer it never recorded.
      const [first, second, ...more] = tmc.notificationsFor(id);
      expect(more, `user ${id} notified ${2 + more.length} times`).toEqual([]);
      expect(first!.receivedAt!, `user ${id} notified twice, the first time after the kill`).toBeLessThanOrEqual(killedAt);
      expect(second!.receivedAt!).toBeGreaterThan(killedAt);
    }
    console.log(`load: 100 operations done; 503s retried: ${stats.unavailable}; links answered 202 activating first: ${stats.activating}; TMC notified twice: ${twice.length}`);

    // The killed worker comes back.
    workers[0]!.start();
    await eventually(() => workers[0]!.text.includes('"worker started"'), { timeoutMs: 180_000, intervalMs: 250, what: 'the worker to restart' });
  }, 600_000);

  it('answers nothing worse than 503 with Retry-After during a rolling restart of both APIs under load', async () => {
    for (const id of [9501, 9502, 9503]) tmc.addUser({ id });
    const answers: Answer[] = [];
    let loading = true;
    const load = Array.from({ length: 4 }, async (_, lane) => {
      for (let n = 0; loading; n++) {
        const id = 9501 + ((lane + n) % 3);
        answers.push(
          n % 2 === 0
            ? await call('POST', '/api/v0/tmc-server/users/create', { upstream_id: id, password: `rolling ${id}` }, { authorization: SECRET })
            : await call('GET', `/api/v0/tmc-server/users-by-upstream-id/${id}/status`, undefined, { authorization: SECRET }),
        );
      }
    });
    await new Promise((r) => setTimeout(r, 2_000));
    for (const api of apis) {
      const code = await api.stop('SIGTERM');
      expect(code, api.text.slice(-2000)).toBe(0);
      api.start();
      await eventually(() => lb.ready.has(api) || !api.running, { timeoutMs: 60_000, intervalMs: 100, what: 'the restarted API to be ready' });
      expect(api.running, api.text.slice(-2000)).toBe(true);
      await new Promise((r) => setTimeout(r, 1_000));
    }
    loading = false;
    await Promise.all(load);

    const bad = answers.filter((a) => !(a.status === 200 || (a.status === 503 && a.retryAfter !== null && /^\d+$/.test(a.retryAfter))));
    console.log(`rolling restart: ${answers.length} answers, ${answers.filter((a) => a.status === 503).length} were 503`);
    expect(bad, JSON.stringify(bad.slice(0, 5))).toEqual([]);
    expect(answers.length).toBeGreaterThan(20);
  }, 300_000);
});
