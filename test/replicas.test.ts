/**
 * Replicas that start, die and restart together (issue 14, section 4).
 *
 * - Four processes applying the migrations at once on an empty database, as a deploy or an
 *   orchestrator starts them, all come up: they wait for the one that migrates, never crash.
 * - A worker SIGKILLed while it holds a create's workflow: the create that cannot be served in
 *   time gets 503 with `Retry-After` (as every 503 does), and the retry succeeds once a worker runs.
 */
import { migrationSource } from '../src/db/migrations';
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi } from '../src/api/main';
import { loadConfig } from '../src/config';
import { createDb } from '../src/db';
import { resolveKeys } from '../src/temporal/codec';
import { WORKER_NODE_FLAGS } from '../src/worker';
import { createDatabase, eventually, startHarness } from './support/harness';

const ROUNDS = 6;

describe('replicas starting together on an empty database', () => {
  const children: Array<{ proc: ChildProcessWithoutNullStreams; next: () => Promise<string> }> = [];

  beforeAll(async () => {
    for (let i = 0; i < 4; i++) {
      const proc = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'support/migrateProcess.ts')], { stdio: ['pipe', 'pipe', 'pipe'] });
      const lines = readline.createInterface({ input: proc.stdout });
      const queue: string[] = [];
      const waiting: Array<(line: string) => void> = [];
      lines.on('line', (line) => (waiting.length ? waiting.shift()!(line) : queue.push(line)));
      const next = () => new Promise<string>((resolve) => (queue.length ? resolve(queue.shift()!) : waiting.push(resolve)));
      children.push({ proc, next });
    }
    for (const c of children) expect(await c.next()).toBe('ready');
  });
  afterAll(() => children.forEach((c) => c.proc.kill()));

  it(`all four apply the migrations without an error, ${ROUNDS} times in a row`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const url = await createDatabase();
      // The same moment for all four: each is already running and only reads a line.
      for (const c of children) c.proc.stdin.write(`${url}\n`);
      const answers = await Promise.all(children.map((c) => c.next()));
      expect(answers, `round ${round + 1}`).toEqual(['ok', 'ok', 'ok', 'ok']);
      const db = createDb({ url });
      try {
        const applied = await db('knex_migrations').select('name').orderBy('id');
        // Each migration applied exactly once, and the default tenant created once.
        expect(applied.map((r) => r.name)).toEqual(await migrationSource.getMigrations([]));
        expect(await db('tenants').where({ identifier: 'default' }).count({ n: '*' })).toEqual([{ n: '1' }]);
      } finally {
        await db.destroy();
      }
    }
  });
});

describe('a worker killed while it holds a create', () => {
  it('answers the create 503 with Retry-After and the error JSON, and the retry succeeds on another worker', async () => {
    const h = await startHarness({ worker: false });
    let worker: ChildProcess | undefined;
    try {
      const output: string[] = [];
      worker = spawn(process.execPath, [...WORKER_NODE_FLAGS, '--require', 'tsx/cjs', 'src/worker.ts'], {
        env: { ...process.env, ...h.env, WORKER_METRICS_PORT: '0', TEMPORAL_SDK_METRICS_ADDRESS: '127.0.0.1:0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      worker.stdout!.on('data', (c) => output.push(String(c)));
      worker.stderr!.on('data', (c) => output.push(String(c)));
      await eventually(() => output.join('').includes('"worker started"'), { timeoutMs: 90_000, intervalMs: 250, what: 'the worker process to start' });

      // The user's workflow stays open on that worker (its TMC notification is held), so the
      // next create for the user is an update sent to that worker's sticky queue.
      h.tmc.addUser({ id: 7401 });
      h.tmc.holdNotifications = new Promise<void>(() => undefined);
      expect((await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 7401, password: 'first password' })).status).toBe(200);
      await eventually(() => h.tmc.notificationAttempts(7401).length === 1, { what: 'the notification call' });
      worker.kill('SIGKILL');

      const second = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 7401, password: 'second password' });
      expect(second.status).toBe(503);
      expect(second.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(second.body).toEqual({ title: 'Service Unavailable', message: expect.any(String), source: null, data: null });

      h.tmc.holdNotifications = undefined;
      await h.startWorker();
      const retried = await eventually(async () => {
        const r = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 7401, password: 'second password' });
        return r.status === 200 ? r : undefined;
      }, { timeoutMs: 60_000, intervalMs: 1_000, what: 'the retried create to succeed' });
      expect(retried.body).toMatchObject({ password_set: true });
    } finally {
      if (worker && worker.exitCode === null) worker.kill('SIGKILL');
      await h.close();
    }
  }, 180_000);

  it('answers /readyz 503 with Retry-After while a dependency is down', async () => {
    const h = await startHarness({ worker: false });
    // A second API whose Temporal does not answer (its connection is lazy, so it starts).
    const config = loadConfig({ ...h.env, TEMPORAL_ADDRESS: '127.0.0.1:1' });
    const api = await startApi(config, { db: h.db, log: h.log, keys: resolveKeys(config, h.log), port: 0 });
    try {
      const r = await fetch(`${api.url}/readyz`);
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
    } finally {
      await api.close();
      await h.close();
    }
  }, 60_000);
});
