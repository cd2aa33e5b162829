/**
 * CPU time of this process tree by role (this process, the API, the worker, the Temporal dev
 * server, PostgreSQL), read from /proc: the difference of two samples says who used the cores.
 */
import { readdirSync, readFileSync } from 'node:fs';

export type Role = 'bench' | 'api' | 'worker' | 'temporal' | 'postgres' | 'other';
export type CpuSample = Record<Role, number> & { at: number };

const TICKS = 100; // USER_HZ on Linux

function stat(pid: number): { ppid: number; cpu: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command may contain spaces and parentheses: fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / TICKS };
  } catch {
    return undefined;
  }
}

function roleOf(pid: number): Role {
  let cmd = '';
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return 'other';
  }
  if (cmd.includes('api-process')) return 'api';
  if (cmd.includes('worker-process')) return 'worker';
  if (/temporal server start-dev/.test(cmd)) return 'temporal';
  if (/postgres/.test(cmd)) return 'postgres';
  return 'other';
}

/** CPU seconds used so far by every descendant of this process, by role (exited ones excluded). */
export function sampleCpu(): CpuSample {
  const parents = new Map<number, { ppid: number; cpu: number }>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const s = stat(pid);
    if (s) parents.set(pid, s);
  }
  const sample: CpuSample = { bench: 0, api: 0, worker: 0, temporal: 0, postgres: 0, other: 0, at: performance.now() };
  const own = process.cpuUsage();
  sample.bench = (own.user + own.system) / 1e6;
  for (const [pid, s] of parents) {
    if (pid === process.pid) continue;
    // Is it a descendant of this process?
    let p = s.ppid;
    let depth = 0;
    while (p > 1 && p !== process.pid && depth++ < 20) p = parents.get(p)?.ppid ?? 0;
    if (p !== process.pid) continue;
    sample[roleOf(pid)] += s.cpu;
  }
  return sample;
}

/** Cores used by each role between two samples. */
export function coresBetween(a: CpuSample, b: CpuSample): Record<Role, number> & { total: number } {
  const seconds = (b.at - a.at) / 1000;
  const roles: Role[] = ['bench', 'api', 'worker', 'temporal', 'postgres', 'other'];
  const out = Object.fromEntries(roles.map((r) => [r, Math.max(b[r] - a[r], 0) / seconds])) as Record<Role, number>;
  return { ...out, total: roles.reduce((n, r) => n + out[r], 0) };
}

export function formatCores(c: Record<string, number>): string {
  return Object.entries(c)
    .filter(([, v]) => v >= 0.01)
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(', ');
}
