/**
 * Graceful shutdown: the API, as its own process, gets SIGTERM in the middle of a load. Every
 * request either gets its answer or, after the listener closed, a refused connection: none is
 * reset half-way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { freePort } from '../src/dev/ports';
import { createDatabase, eventually, SECRET } from './support/harness';

let api: ChildProcess;
let url: string;
const output: string[] = [];

beforeAll(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  api = spawn(process.execPath, ['--require', 'tsx/cjs', 'src/api/main.ts'], {
    env: {
      ...process.env,
      PORT: String(port),
      DATABASE_URL: await createDatabase(),
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT: SECRET,
      RATE_LIMIT_DISABLED: 'true',
      SHUTDOWN_DRAIN: '1s',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  api.stdout!.on('data', (c) => output.push(String(c)));
  api.stderr!.on('data', (c) => output.push(String(c)));
  await eventually(async () => (await fetch(`${url}/healthz`)).ok, { timeoutMs: 60_000, intervalMs: 250 });
});
afterAll(() => {
  if (api.exitCode === null) api.kill('SIGKILL');
});

describe('SIGTERM under load', () => {
  it('finishes in-flight requests, refuses new connections only after draining, and resets none', async () => {
    const outcomes = { ok: 0, okAfterSigterm: 0, refused: 0, other: [] as string[] };
    let sigtermAt = Infinity;
    let stop = false;
    const client = async () => {
      while (!stop) {
        try {
          const res = await fetch(`${url}/api/v0/tmc-server/users/authenticate`, {
            method: 'POST',
            headers: { authorization: SECRET, 'content-type': 'application/json' },
            body: JSON.stringify({ user_id: randomUUID(), password: 'load' }),
          });
          const text = await res.text();
          if (res.status === 200 && text === 'false') {
            outcomes.ok++;
            if (Date.now() > sigtermAt) outcomes.okAfterSigterm++;
          } else outcomes.other.push(`${res.status} ${text.slice(0, 80)}`);
        } catch (err) {
          const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
          if (code === 'ECONNREFUSED') {
            outcomes.refused++;
            return;
          }
          outcomes.other.push(String(code));
        }
      }
    };
    const clients = Array.from({ length: 8 }, client);
    await new Promise((r) => setTimeout(r, 1_500));
    sigtermAt = Date.now();
    api.kill('SIGTERM');
    const [code] = (await once(api, 'exit')) as [number | null];
    stop = true;
    await Promise.all(clients);

    console.log(`shutdown under load: ${JSON.stringify({ ...outcomes, other: outcomes.other.length })}`);
    expect(outcomes.other, output.join('').slice(-2000)).toEqual([]);
    expect(outcomes.ok).toBeGreaterThan(8);
    expect(outcomes.okAfterSigterm).toBeGreaterThan(0);
    expect(code).toBe(0);
    expect(output.join('')).toMatch(/API stopped/);
  });
});
