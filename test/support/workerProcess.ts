/**
 * The worker as operators run it: its own process (`src/worker.ts` through tsx), with the
 * environment a harness built. For tests that kill it (SIGKILL, SIGTERM) or need it apart from
 * the test process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { eventually } from './serviceEnv';
import { WORKER_NODE_FLAGS } from '../../src/worker';

export interface WorkerProcess {
  child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
}

/**
 * Starts `src/worker.ts` with `env` and resolves once it logs "worker started" (it bundles the
 * workflow code at start: 10–20 s on two cores). The caller stops or kills it.
 */
export async function startWorkerProcess(env: Record<string, string | undefined>): Promise<WorkerProcess> {
  const chunks: string[] = [];
  const child = spawn(process.execPath, [...WORKER_NODE_FLAGS, '--require', 'tsx/cjs', 'src/worker.ts'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (c) => chunks.push(String(c)));
  child.stderr!.on('data', (c) => chunks.push(String(c)));
  const output = () => chunks.join('');
  try {
    await eventually(() => output().includes('"worker started"'), { timeoutMs: 90_000, intervalMs: 100, what: 'the worker process to start' });
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${output().slice(-2000)}`);
  }
  return { child, output };
}
