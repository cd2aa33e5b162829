/**
 * `npm start` as a developer uses it: the real command, with its own embedded PostgreSQL and
 * Temporal dev server (on ports of its own here, through DEV_* variables, and its own data
 * directory). It must stop cleanly whichever process gets the signal, and come back on the same
 * ports with the same data after being killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/dev/ports';
import { isAlive } from '../src/dev/processes';
import type { StackState } from '../src/dev/stackState';
import { PROJECT_ROOT } from '../src/dev/temporalServer';

const dataDir = mkdtempSync(path.join(tmpdir(), 'npm-start-test-'));
const stackFile = path.join(dataDir, 'dev-stack.json');
let ports: Record<string, number>;
const started: Running[] = [];

interface Running {
  npm: ChildProcess;
  output: () => string;
  exit: Promise<[number | null, NodeJS.Signals | null]>;
  stack: StackState;
  databaseUrl: string;
}

async function portsOnce() {
  ports ??= {
    PORT: await freePort(),
    DEV_POSTGRES_PORT: await freePort(),
    DEV_TEMPORAL_PORT: await freePort(),
    DEV_TEMPORAL_UI_PORT: await freePort(),
    WORKER_METRICS_PORT: await freePort(),
    SDK: await freePort(),
  };
  return ports;
}

/** `npm start` in a process group of its own (as a terminal runs it), until its banner shows. */
async function npmStart(): Promise<Running> {
  const p = await portsOnce();
  const env: NodeJS.ProcessEnv = { ...process.env, DEV_DATA_DIR: dataDir, LOG_LEVEL: 'info', TEMPORAL_SDK_METRICS_ADDRESS: `127.0.0.1:${p.SDK}` };
  for (const name of ['PORT', 'DEV_POSTGRES_PORT', 'DEV_TEMPORAL_PORT', 'DEV_TEMPORAL_UI_PORT', 'WORKER_METRICS_PORT']) env[name] = String(p[name]);
  for (const name of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'NODE_OPTIONS']) delete env[name];
  const npm = spawn('npm', ['start'], { cwd: PROJECT_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: string[] = [];
  npm.stdout!.on('data', (c) => chunks.push(String(c)));
  npm.stderr!.on('data', (c) => chunks.push(String(c)));
  const exit = once(npm, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const output = () => chunks.join('');
  const deadline = Date.now() + 150_000;
  while (!/^API: /m.test(output())) {
    if (npm.exitCode !== null || Date.now() > deadline) throw new Error(`npm start did not come up:\n${output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const running = { npm, output, exit, stack: JSON.parse(readFileSync(stackFile, 'utf8')) as StackState, databaseUrl: /PostgreSQL \(embedded\): +(\S+)/.exec(output())![1]! };
  started.push(running);
  return running;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/** Every process of a stack: npm, the dev.ts node process, Temporal, PostgreSQL. */
function pidsOf(r: Running): number[] {
  return [r.npm.pid!, r.stack.owner, r.stack.temporal!.pid, r.stack.postgres!.pid];
}

async function expectAllGone(r: Running) {
  for (const pid of pidsOf(r)) expect(isAlive(pid), `process ${pid} is still running`).toBe(false);
  for (const port of Object.values(ports)) expect(await portIsFree(port), `port ${port} is still taken`).toBe(true);
  expect(existsSync(stackFile), 'the stack file is removed after a clean stop').toBe(false);
}

async function expectCleanStop(r: Running) {
  const [code, signal] = await r.exit;
  expect({ code, signal }).toEqual({ code: 0, signal: null });
  expect(r.output()).toMatch(/"msg":"stopped"/);
  expect(r.output()).not.toMatch(/IllegalStateError|^\s+at /m);
  await expectAllGone(r);
}

/** What a signup left: its workflow in Temporal and its rows in PostgreSQL. */
async function signupsKept(r: Running): Promise<{ waiting: number; rows: number }> {
  const connection = await Connection.connect({ address: `127.0.0.1:${ports.DEV_TEMPORAL_PORT}` });
  const db = new pg.Client({ connectionString: r.databaseUrl });
  await db.connect();
  try {
    const { count } = await connection.workflowService.countWorkflowExecutions({ namespace: 'default', query: 'SignupState="AwaitingVerification"' });
    const waiting = Number(count);
    const rows = Number((await db.query('SELECT count(*) AS n FROM signups')).rows[0].n);
    return { waiting, rows };
  } finally {
    await db.end();
    await connection.close();
  }
}

afterAll(async () => {
  for (const r of started) for (const pid of pidsOf(r)) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
}, 30_000);

describe('npm start', () => {
  it('stops the whole tree in order with exit 0 on Ctrl-C (SIGINT to its process group)', async () => {
    const r = await npmStart();
    const api = `http://127.0.0.1:${ports.PORT}`;
    const signup = await fetch(`${api}/api/v0/signups`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ tenant: 'default', email: 'kept@example.test', display_name: 'Kept', password: 'kept password 1' }),
    });
    expect(signup.status).toBe(202);
    await expect.poll(() => signupsKept(r), { timeout: 30_000 }).toEqual({ waiting: 1, rows: 1 });

    process.kill(-r.npm.pid!, 'SIGINT');
    await expectCleanStop(r);
    const order = ['stopping: API drain', '"state":"DRAINED"', '"msg":"stopped"'].map((m) => r.output().indexOf(m));
    expect(order.every((at, i) => at >= 0 && (i === 0 || at > order[i - 1]!)), `stop order in:\n${r.output().slice(-2000)}`).toBe(true);
  }, 240_000);

  it('stops cleanly on SIGTERM to the node process alone, and to npm alone', async () => {
    const a = await npmStart();
    process.kill(a.stack.owner, 'SIGTERM');
    await expectCleanStop(a);

    const b = await npmStart();
    process.kill(b.npm.pid!, 'SIGTERM');
    await expectCleanStop(b);
  }, 300_000);

  it('after its node process is SIGKILLed, the next start stops what was left and comes back on the same ports with the same data', async () => {
    const dead = await npmStart();
    process.kill(dead.stack.owner, 'SIGKILL');
    process.kill(dead.npm.pid!, 'SIGKILL');
    await dead.exit;
    // The Temporal dev server and PostgreSQL outlive it: they are in process groups of their own.
    expect(isAlive(dead.stack.temporal!.pid) && isAlive(dead.stack.postgres!.pid)).toBe(true);

    const next = await npmStart();
    expect(next.output()).toContain(`Stopped a stale Temporal dev server (pid ${dead.stack.temporal!.pid}`);
    expect(next.output()).toContain(`Stopped a stale PostgreSQL (pid ${dead.stack.postgres!.pid})`);
    expect(isAlive(dead.stack.temporal!.pid) || isAlive(dead.stack.postgres!.pid)).toBe(false);
    expect(next.output()).toContain(`Temporal:     127.0.0.1:${ports.DEV_TEMPORAL_PORT} `);
    expect(next.databaseUrl).toContain(`:${ports.DEV_POSTGRES_PORT}/`);
    expect(await signupsKept(next)).toEqual({ waiting: 1, rows: 1 });

    // A second npm start while this one runs is refused, and leaves the running one alone.
    await expect(npmStart()).rejects.toThrow(/another npm start of this checkout is running \(pid \d+\)/);
    expect(pidsOf(next).every(isAlive)).toBe(true);

    // The whole tree SIGKILLed: nothing is left running, only files.
    for (const pid of pidsOf(next)) process.kill(pid, 'SIGKILL');
    await next.exit;
    const last = await npmStart();
    expect(last.output()).toContain(`Temporal:     127.0.0.1:${ports.DEV_TEMPORAL_PORT} `);
    expect(await signupsKept(last)).toEqual({ waiting: 1, rows: 1 });
    process.kill(-last.npm.pid!, 'SIGINT');
    await expectCleanStop(last);
  }, 480_000);

  it('stops the whole tree when its terminal is closed (SIGHUP to its process group): no server is left running', async () => {
    const r = await npmStart();
    process.kill(-r.npm.pid!, 'SIGHUP');
    await r.exit; // npm itself dies of the hang-up; its node process stops the rest
    await expect.poll(() => isAlive(r.stack.owner), { timeout: 60_000 }).toBe(false);
    await expectAllGone(r);
  }, 240_000);

  it("with the API's PORT taken by another program, stops at once naming the port, with no stack trace and nothing left running", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    const dir = mkdtempSync(path.join(tmpdir(), 'npm-start-taken-'));
    const env: NodeJS.ProcessEnv = { ...process.env, DEV_DATA_DIR: dir, TEMPORAL_SDK_METRICS_ADDRESS: `127.0.0.1:${await freePort()}` };
    for (const n of ['PORT', 'DEV_POSTGRES_PORT', 'DEV_TEMPORAL_PORT', 'DEV_TEMPORAL_UI_PORT', 'WORKER_METRICS_PORT']) env[n] = String(await freePort());
    env.PORT = String(port);
    for (const n of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'NODE_OPTIONS']) delete env[n];
    try {
      const npm = spawn('npm', ['start'], { cwd: PROJECT_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      npm.stdout!.on('data', (c) => (output += String(c)));
      npm.stderr!.on('data', (c) => (output += String(c)));
      const [code] = (await once(npm, 'exit')) as [number | null];
      expect(code).toBe(1);
      expect(output).toMatch(new RegExp(`port ${port} \\(.*\\) is in use by another program`));
      expect(output).not.toMatch(/^\s+at /m);
      // It stopped before starting anything: no stack was recorded, no server was left.
      expect(existsSync(path.join(dir, 'dev-stack.json'))).toBe(false);
      for (const n of ['DEV_POSTGRES_PORT', 'DEV_TEMPORAL_PORT']) expect(await portIsFree(Number(env[n])), n).toBe(true);
    } finally {
      taken.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
