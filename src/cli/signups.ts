/**
 * `npm run signups -- <command>`: find and handle signups that wait for their verification link.
 *
 *   stuck [--older-than 1h] [--limit 100]
 *                             running signups in SignupState="AwaitingVerification" (started before
 *                             now minus the duration), the oldest first, with tenant, user id, age
 *                             and emails sent; at most --limit rows (default 100) are printed and
 *                             queried, and the total is always said
 *   resend <workflowId>       a fresh link (the workflow throttles it by SIGNUP_RESEND_INTERVAL)
 *   cancel <workflowId>       expire the signup now (the candidate is deleted); waits for the result
 *
 * resend and cancel also work on a signup whose workflow was terminated while the signup was
 * pending: a fresh run of it is started from the closed run's input, with the signal.
 *
 * Connects to TEMPORAL_ADDRESS (default 127.0.0.1:DEV_TEMPORAL_PORT, else 7233: the dev server of `npm start`) and
 * TEMPORAL_NAMESPACE (default `default`). Payloads (memos, query results) are decrypted with
 * PAYLOAD_ENCRYPTION_KEYS, or in development with the key `npm start` keeps in .data/.
 * Exit codes: 0 ok, 1 failure, 2 usage.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import type { SignalDefinition } from '@temporalio/common';
import { decodeArrayFromPayloads } from '@temporalio/common/lib/internal-non-workflow';
import { msToNumber } from '@temporalio/common/lib/time';
import { createTemporalClient } from '../temporal/client';
import { isWorkflowClosed } from '../temporal/starters';
import { loadKeys } from '../temporal/codec';
import { loadTemporalConnection } from '../temporal/connection';
import { cancelSignal, resendSignal, SignupStateKey, signupStatusQuery, type SignupWorkflowInput } from '../workflows/shared';
import type { signupWorkflow } from '../workflows/signup';

const USAGE = [
  'usage: npm run signups -- <command>',
  '  stuck [--older-than <duration>] [--limit <n>]',
  '                                    signups awaiting verification, the oldest first, e.g. --older-than 1h',
  '                                    (30s, 15m, 2d); at most --limit rows (default 100)',
  '  resend <workflowId>               send a fresh verification link (throttled by the workflow)',
  '  cancel <workflowId> [--wait 30s]  expire the signup now and print the workflow result',
].join('\n');

/** How long one `status` query may take before its column shows `?`. */
const QUERY_DEADLINE_MS = 3_000;
/** How many signups are queried at once. */
const QUERY_CONCURRENCY = 8;
/** Rows `stuck` prints (and queries) unless --limit says otherwise. */
const DEFAULT_LIMIT = 100;
/** Bound on the list itself and on single calls (describe, signal). */
const CALL_DEADLINE_MS = 30_000;

class UsageError extends Error {}
class CliFailure extends Error {}

/** A duration such as `30s`, `15m`, `1h` or `2d`, in ms; throws a UsageError otherwise. */
function parseDuration(value: string | undefined, option: string): number {
  let ms = Number.NaN;
  try {
    if (value !== undefined && value !== '') ms = msToNumber(value as Parameters<typeof msToNumber>[0]);
  } catch {
    ms = Number.NaN;
  }
  if (!Number.isFinite(ms) || ms <= 0) throw new UsageError(`${option}: expected a duration like 30s, 15m, 1h or 2d, got "${value ?? ''}"`);
  return ms;
}

/** A positive whole number; throws a UsageError otherwise. */
function parseCount(value: string | undefined, option: string): number {
  const n = /^\d+$/.test(value ?? '') ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${option}: expected a positive whole number, got "${value ?? ''}"`);
  return n;
}

/** `2h13m`, `5m07s`, `42s`, `3d4h`. */
function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3_600);
  const m = Math.floor((s % 3_600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

/** Splits `--name value` / `--name=value` options from positional arguments. */
function parseArgs(args: string[], known: string[]): { positional: string[]; options: Map<string, string | undefined> } {
  const positional: string[] = [];
  const options = new Map<string, string | undefined>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    if (!known.includes(name)) throw new UsageError(`unknown option --${name}`);
    options.set(name, eq >= 0 ? arg.slice(eq + 1) : args[++i]);
  }
  return { positional, options };
}

function stuckQuery(olderThanMs: number | undefined, now = Date.now()): string {
  // Only running workflows: a terminated run can keep its last SignupState forever.
  let query = 'SignupState="AwaitingVerification" AND ExecutionStatus="Running"';
  if (olderThanMs !== undefined) query += ` AND StartTime < "${new Date(now - olderThanMs).toISOString()}"`;
  return query;
}

async function emailsSent(client: Client, workflowId: string, runId: string): Promise<string> {
  try {
    const status = await client.withDeadline(Date.now() + QUERY_DEADLINE_MS, () =>
      client.workflow.getHandle(workflowId, runId).query(signupStatusQuery),
    );
    return String(status.emailsSent);
  } catch {
    // No worker answering, the run just closed, or the deadline passed.
    return '?';
  }
}

/** Maps with at most `limit` calls in flight. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  });
  await Promise.all(lanes);
  return results;
}

async function stuck(client: Client, args: string[]): Promise<number> {
  const { positional, options } = parseArgs(args, ['older-than', 'limit']);
  if (positional.length > 0) throw new UsageError(`unexpected argument ${positional[0]}`);
  const olderThanMs = options.has('older-than') ? parseDuration(options.get('older-than'), '--older-than') : undefined;
  const limit = options.has('limit') ? parseCount(options.get('limit'), '--limit') : DEFAULT_LIMIT;
  const query = stuckQuery(olderThanMs);

  const found: WorkflowExecutionInfo[] = [];
  await client.withDeadline(Date.now() + CALL_DEADLINE_MS, async () => {
    for await (const wf of client.workflow.list({ query })) found.push(wf);
  });
  // Visibility lists the newest first; operators want the oldest. Listing is cheap (~0.5 ms a
  // row); the status query per workflow is not, so only the rows printed are queried.
  found.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
  const shown = found.slice(0, limit);

  const now = Date.now();
  const sent = await mapLimit(shown, QUERY_CONCURRENCY, (wf) => emailsSent(client, wf.workflowId, wf.runId));
  const rows = shown.map((wf, i) => [
    wf.workflowId,
    typeof wf.memo?.tenant === 'string' ? wf.memo.tenant : '-',
    typeof wf.memo?.userId === 'string' ? wf.memo.userId : '-',
    formatAge(now - wf.startTime.getTime()),
    sent[i]!,
  ]);
  const header = ['WORKFLOW ID', 'TENANT', 'USER ID', 'AGE', 'EMAILS SENT'];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
  const total = found.length > shown.length ? `${found.length} signup(s) awaiting verification, the oldest ${shown.length} shown (--limit)` : `${found.length} signup(s) awaiting verification`;
  console.error(`${total} (${query})`);
  return 0;
}

/**
 * The running signup workflow `workflowId`, or a CliFailure saying why not. A signup whose run an
 * operator terminated (or that otherwise closed without ending it: its SignupState still says it
 * waits) gets a fresh run from the closed run's own input, with `signal` as its first event, so
 * that its database row ends as the command says instead of staying pending.
 */
async function runningSignup(client: Client, workflowId: string, signal: SignalDefinition) {
  const description = await client
    .withDeadline(Date.now() + CALL_DEADLINE_MS, () => client.workflow.getHandle(workflowId).describe())
    .catch((err: unknown) => {
      if (err instanceof Error && err.name === 'WorkflowNotFoundError') throw new CliFailure(`no workflow ${workflowId}`);
      throw err;
    });
  if (description.type !== 'signupWorkflow') throw new CliFailure(`${workflowId} is a ${description.type}, not a signupWorkflow`);
  if (description.status.name === 'RUNNING') return { handle: client.workflow.getHandle(workflowId, description.runId), restarted: false };
  const state = description.typedSearchAttributes.get(SignupStateKey);
  if (description.status.name === 'COMPLETED' || (state !== 'AwaitingVerification' && state !== 'Activating')) {
    throw new CliFailure(`${workflowId} is not running (${description.status.name})`);
  }
  // Closed while its signup was pending: start it again from the same input, with the signal.
  const history = await client.withDeadline(Date.now() + CALL_DEADLINE_MS, () => client.workflow.getHandle(workflowId, description.runId).fetchHistory());
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  const [input] = (await decodeArrayFromPayloads(client.options.loadedDataConverter, started?.input?.payloads)) as [SignupWorkflowInput | undefined];
  if (!input) throw new CliFailure(`${workflowId} is not running (${description.status.name}), and its input could not be read`);
  console.error(`${workflowId} was ${description.status.name} with its signup pending: starting a fresh run of it`);
  const handle = await client.withDeadline(Date.now() + CALL_DEADLINE_MS, () =>
    client.workflow.signalWithStart<typeof signupWorkflow, []>('signupWorkflow', {
      workflowId,
      taskQueue: description.taskQueue,
      args: [input],
      signal: signal as SignalDefinition<[]>,
      signalArgs: [],
      typedSearchAttributes: [{ key: SignupStateKey, value: 'AwaitingVerification' }],
      staticSummary: `Signup for user ${input.userId} (restarted by the signups CLI)`,
    }),
  );
  return { handle, restarted: true };
}

/** Sends a signal to the run `runningSignup` found; a run that closed in between is a CliFailure, not a stack trace. */
async function signalRunning(client: Client, workflowId: string, send: () => Promise<void>): Promise<void> {
  await client.withDeadline(Date.now() + CALL_DEADLINE_MS, send).catch((err: unknown) => {
    if (isWorkflowClosed(err)) throw new CliFailure(`${workflowId} closed before the signal reached it`);
    throw err;
  });
}

async function resend(client: Client, args: string[]): Promise<number> {
  const { positional } = parseArgs(args, []);
  const [workflowId, extra] = positional;
  if (!workflowId || extra !== undefined) throw new UsageError('resend takes one workflow id');
  const { handle, restarted } = await runningSignup(client, workflowId, resendSignal);
  if (!restarted) await signalRunning(client, workflowId, () => handle.signal(resendSignal));
  console.log(`${workflowId}: resend requested (a fresh link goes out unless the last one is younger than the resend interval)`);
  return 0;
}

async function cancel(client: Client, args: string[]): Promise<number> {
  const { positional, options } = parseArgs(args, ['wait']);
  const [workflowId, extra] = positional;
  if (!workflowId || extra !== undefined) throw new UsageError('cancel takes one workflow id');
  const waitMs = options.has('wait') ? parseDuration(options.get('wait'), '--wait') : 30_000;
  const { handle, restarted } = await runningSignup(client, workflowId, cancelSignal);
  if (!restarted) await signalRunning(client, workflowId, () => handle.signal(cancelSignal));
  console.error(`${workflowId}: cancel signal sent, waiting up to ${formatAge(waitMs)} for the workflow to end`);

  const signal = AbortSignal.timeout(waitMs);
  let result: unknown;
  try {
    result = await client.withAbortSignal(signal, () => handle.result());
  } catch (err) {
    if (signal.aborted) throw new CliFailure(`${workflowId}: the cancel signal was delivered, but the workflow did not end within ${formatAge(waitMs)}`);
    throw err;
  }
  console.log(`${workflowId}: ${JSON.stringify(result)}`);
  const expired = typeof result === 'object' && result !== null && (result as { outcome?: unknown }).outcome === 'expired';
  if (!expired) {
    console.error(`${workflowId}: the signup was not expired (it was verified before the cancel arrived)`);
    return 1;
  }
  return 0;
}

/** The error's message and those of its causes: the SDK's own messages are often generic. */
function describeError(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e !== undefined && parts.length < 5; e = e instanceof Error ? e.cause : undefined) {
    const message = e instanceof Error ? e.message : String(e);
    if (message && !parts.includes(message)) parts.push(message);
  }
  return parts.join(': ');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    console.error(USAGE);
    return command === undefined ? 2 : 0;
  }
  const commands: Record<string, (client: Client, args: string[]) => Promise<number>> = { stuck, resend, cancel };
  const run = commands[command];
  if (!run) throw new UsageError(`unknown command ${command}`);

  // Temporal's environment configuration, as the service reads it; a local dev server by default.
  const temporal = loadTemporalConnection(process.env);
  if (!temporal.ok) throw new Error(`invalid Temporal configuration:\n${temporal.problems.map((p) => `  ${p}`).join('\n')}`);
  const keys = loadKeys({
    spec: process.env.PAYLOAD_ENCRYPTION_KEYS || undefined,
    production: process.env.NODE_ENV === 'production',
    onGenerated: (file) => console.error(`PAYLOAD_ENCRYPTION_KEYS is unset: generated a development key in ${file}`),
  });
  const client = createTemporalClient({ ...temporal.connection, address: temporal.connection.address ?? `127.0.0.1:${process.env.DEV_TEMPORAL_PORT || 7233}` }, keys);
  try {
    return await run(client, args);
  } finally {
    await client.connection.close().catch(() => undefined);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n${USAGE}`);
      process.exit(2);
    }
    console.error(describeError(err));
    process.exit(1);
  },
);
