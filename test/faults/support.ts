/**
 * Shared by the fault-injection cases (`npm run test:faults`): the scale of each case (reduced
 * by default, FAULTS_FULL=1 for the full one), the stack (bench/stack.ts: the API and the worker
 * as child processes, on the PostgreSQL and Temporal dev server of the global setup), and the
 * report every case prints: what it injected and what it counted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, inject } from 'vitest';
import { startStack, type Stack, type StackOptions } from '../../bench/stack';
import { checkNotificationInvariant, type NotificationInvariant } from '../support/invariant';
import { eventually as eventuallyWithin } from '../support/serviceEnv';

export const FULL = process.env.FAULTS_FULL === '1';

/** The full figure with FAULTS_FULL=1, else the reduced one. */
export function scale<T>(full: T, reduced: T): T {
  return FULL ? full : reduced;
}

// The child processes' logs are kept when a case fails (or with FAULTS_KEEP_LOGS=1), else removed.
let failed = false;
afterEach((context) => {
  if (context.task.result?.state === 'fail') failed = true;
});

/**
 * A stack for one case. By default on the global setup's PostgreSQL and Temporal dev server,
 * with the global setup's workflow bundle; `ownPostgres` starts a PostgreSQL the case may stop.
 */
export async function startFaultStack(options: { ownPostgres?: boolean; env?: Record<string, string> } & Partial<StackOptions> = {}): Promise<Stack> {
  const dir = mkdtempSync(path.join(tmpdir(), 'accounts-faults-'));
  const stack = await startStack({
    dir,
    postgresAdminUrl: options.ownPostgres ? undefined : inject('postgresAdminUrl'),
    temporalAddress: inject('temporalAddress'),
    bundlePath: inject('workflowBundlePath'),
    ...options,
    env: { ...options.env },
  });
  const close = stack.close;
  stack.close = async () => {
    await close();
    if (failed || process.env.FAULTS_KEEP_LOGS === '1') console.log(`fault case logs (API, workers) kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };
  return stack;
}

/** Prints the case's report: what was injected, what was counted. */
export function report(name: string, injected: string[], counted: Record<string, unknown>): void {
  const lines = [
    `── fault case: ${name} (${FULL ? 'full' : 'reduced'}) ──`,
    ...injected.map((l) => `  injected: ${l}`),
    ...Object.entries(counted).map(([k, v]) => `  counted:  ${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`),
  ];
  console.log(lines.join('\n'));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value or the time runs out (60 s by default here). */
export function eventually<T>(check: () => Promise<T> | T, { timeoutMs = 60_000, intervalMs = 200, what = 'condition' } = {}): Promise<NonNullable<T>> {
  return eventuallyWithin(check, { timeoutMs, intervalMs, what });
}

/** Runs `fn` over `items` with at most `limit` at a time. */
export async function pool<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]!, i);
      }
    }),
  );
  return results;
}

/** Counts of values: { value: how many }. */
export function tally(values: Array<string | number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[String(v)] = (out[String(v)] ?? 0) + 1;
  return out;
}

/**
 * The create invariant after a case (test/support/invariant.ts): every TMC user with a stored
 * password has a notification delivered, pending (its run still open) or recorded as
 * tmc_user_not_found. Printed in the case's report; returns the violations.
 */
export async function notificationInvariant(stack: Stack, name: string): Promise<NotificationInvariant['violations']> {
  const result = await checkNotificationInvariant(stack.db, stack.client);
  report(`${name}: notification invariant`, ['(none: checked after the case)'], {
    'TMC users with a stored password': result.checked,
    delivered: result.delivered,
    'recorded tmc_user_not_found': result.tmcUserNotFound,
    'pending (run open)': result.pending,
    violations: result.violations.length,
  });
  return result.violations;
}
