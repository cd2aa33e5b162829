/**
 * Child processes of the benchmarks and the fault suite: the API and the worker, each run from
 * TypeScript through tsx, configured by environment, reporting readiness over IPC.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import type { ProcessStats } from './processStats';

export const PROJECT_ROOT = path.resolve(__dirname, '..');
export const WORKER_ENTRY = path.join(PROJECT_ROOT, 'bench', 'worker-process.ts');
export const API_ENTRY = path.join(PROJECT_ROOT, 'bench', 'api-process.ts');
/** Loads a .ts entry with tsx in the main thread only (see the file's comment). */
const CHILD_ENTRY = path.join(PROJECT_ROOT, 'bench', 'child-entry.cjs');

export interface Child {
  process: ChildProcess;
  pid: number;
  /** The child's `{ type: 'ready', … }` message. */
  ready: Promise<Record<string, unknown>>;
  /** Resolves with the exit code or signal once the process has exited. */
  exited: Promise<string>;
  /** SIGTERM (then SIGKILL after `graceMs`), or the given signal; resolves on exit. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<string>;
  /** The child's ProcessStats (bench/processStats.ts), over IPC. */
  stats(): Promise<ProcessStats>;
}

/**
 * Starts `entry` with `env` added to this process's environment; stdout and stderr go to
 * `logFile` (appended), so the child's logs cost it what they cost in production: one write.
 */
export function startChild(entry: string, env: Record<string, string>, logFile: string, readyTimeoutMs = 120_000, extraNodeArgs: string[] = []): Child {
  const fd = openSync(logFile, 'a');
  // BENCH_CHILD_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the children.
  const nodeArgs = [...(process.env.BENCH_CHILD_NODE_ARGS ?? '').split(' ').filter(Boolean), ...extraNodeArgs];
  const child = spawn(process.execPath, [...nodeArgs, CHILD_ENTRY, entry], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd, 'ipc'],
  });
  closeSync(fd);
  const exited = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? String(code))));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${path.basename(entry)} not ready within ${readyTimeoutMs} ms (log: ${logFile})`)), readyTimeoutMs);
    child.on('message', (m: unknown) => {
      if (m && typeof m === 'object' && (m as { type?: unknown }).type === 'ready') {
        clearTimeout(timer);
        resolve(m as Record<string, unknown>);
      }
    });
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`${path.basename(entry)} exited (${how}) before it was ready (log: ${logFile})`));
    });
  });
  ready.catch(() => undefined);
  return {
    process: child,
    pid: child.pid!,
    ready,
    exited,
    stats() {
      return new Promise<ProcessStats>((resolve, reject) => {
        const timer = setTimeout(() => (child.off('message', on), reject(new Error('no stats within 10 s'))), 10_000);
        const on = (m: unknown) => {
          if (m && typeof m === 'object' && (m as { type?: unknown }).type === 'stats') {
            clearTimeout(timer);
            child.off('message', on);
            resolve(m as ProcessStats);
          }
        };
        child.on('message', on);
        child.send({ type: 'stats?' });
      });
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 30_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const how = await exited;
      clearTimeout(timer);
      return how;
    },
  };
}

/** Resident set size of a process, in MiB, from /proc (Linux). */
export async function rssMiB(pid: number): Promise<{ rss: number; peak: number }> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}
