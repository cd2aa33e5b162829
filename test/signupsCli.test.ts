/**
 * The operator CLI `npm run signups -- …` (src/cli/signups.ts), run as a child process against
 * the shared Temporal dev server, on signups started through the API.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PROJECT_ROOT } from '../src/dev/temporalServer';
import { DEV_KEY_FILE } from '../src/temporal/codec';
import { signupWorkflowId } from '../src/workflows/shared';
import { eventually, startHarness, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ env: { SIGNUP_RESEND_INTERVAL: '1s' } });
});
afterAll(async () => {
  await h?.close();
});

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(...args: string[]): Promise<CliRun> {
  // The harness encrypts with PAYLOAD_ENCRYPTION_KEYS from its config, or else the development key in .data/.
  const keys = h.config.temporal.encryptionKeys ?? readFileSync(DEV_KEY_FILE, 'utf8').trim();
  return new Promise((resolve, reject) => {
    const child = spawn('npx', ['tsx', 'src/cli/signups.ts', ...args], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, TEMPORAL_ADDRESS: inject('temporalAddress'), TEMPORAL_NAMESPACE: h.config.temporal.namespace, PAYLOAD_ENCRYPTION_KEYS: keys },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The `stuck` row of a workflow, split into its columns, or undefined. */
function rowOf(stdout: string, workflowId: string): { tenant: string; userId: string; age: string; emailsSent: string } | undefined {
  const line = stdout.split('\n').find((l) => l.split(/\s+/)[0] === workflowId);
  if (!line) return undefined;
  const [, tenant = '', userId = '', age = '', emailsSent = ''] = line.trim().split(/\s+/);
  return { tenant, userId, age, emailsSent };
}

const email = () => `cli-${randomUUID().slice(0, 8)}@example.org`;

async function startSignup(address: string) {
  const res = await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: address, display_name: 'Operator Test', password: 'password1' } });
  expect(res.status).toBe(202);
  await eventually(() => h.mail.to(address).length >= 1, { timeoutMs: 60_000 });
  const row = await h.db('signups').where({ identifier: address }).first();
  return { userId: row.user_id as string, workflowId: signupWorkflowId(row.user_id), mailedAt: Date.now() };
}

describe('npm run signups -- stuck | resend | cancel', () => {
  it('lists waiting signups, resends a link, and cancels a signup', async () => {
    const [a, b] = [email(), email()];
    const [first, second] = await Promise.all([startSignup(a), startSignup(b)]);

    // Visibility is eventually consistent, and emailsSent counts once the mail activity completed.
    const stuck = await eventually(
      async () => {
        const run = await cli('stuck');
        expect(run.code, run.stderr).toBe(0);
        const rows = [rowOf(run.stdout, first.workflowId), rowOf(run.stdout, second.workflowId)];
        return rows.every((r) => r?.emailsSent === '1') ? run : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    expect(stuck.stdout.split('\n')[0]).toMatch(/^WORKFLOW ID\s+TENANT\s+USER ID\s+AGE\s+EMAILS SENT$/);
    for (const s of [first, second]) {
      const row = rowOf(stuck.stdout, s.workflowId)!;
      expect(row).toMatchObject({ tenant: 'default', userId: s.userId, emailsSent: '1' });
      expect(row.age).toMatch(/^(\d+s|\d+m\d\ds)$/);
    }

    // --limit: the oldest rows only, and the total said on stderr.
    const limited = await cli('stuck', '--limit', '1');
    expect(limited.code, limited.stderr).toBe(0);
    expect(limited.stdout.trim().split('\n')).toHaveLength(2); // the header and one row
    const total = Number(/^(\d+) signup\(s\) awaiting verification, the oldest 1 shown \(--limit\)/m.exec(limited.stderr)?.[1]);
    expect(total).toBeGreaterThanOrEqual(2);

    const older = await cli('stuck', '--older-than', '1h');
    expect(older.code, older.stderr).toBe(0);
    expect(older.stdout).not.toContain(first.workflowId);
    expect(older.stdout).not.toContain(second.workflowId);
    expect(older.stderr).toMatch(/StartTime < "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"/);

    // cancel: the workflow expires cleanly and the candidate is deleted.
    expect(await h.db('users').where({ id: first.userId }).first()).toBeDefined();
    const cancelled = await cli('cancel', first.workflowId);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout).toContain(`${first.workflowId}: {"outcome":"expired","reason":"cancelled"}`);
    expect(await h.client.workflow.getHandle(first.workflowId).result()).toEqual({ outcome: 'expired', reason: 'cancelled' });
    expect(await h.db('users').where({ id: first.userId }).first()).toBeUndefined();
    await eventually(
      async () => {
        const run = await cli('stuck');
        return run.code === 0 && !run.stdout.includes(first.workflowId) && run.stdout.includes(second.workflowId);
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    // A second cancel finds nothing to cancel.
    const again = await cli('cancel', first.workflowId);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('is not running (COMPLETED)');

    // resend, past the harness's 1 s resend interval: a second mail with a fresh link.
    const wait = second.mailedAt + 1_100 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const firstLink = h.mail.latestLink(b);
    const resent = await cli('resend', second.workflowId);
    expect(resent.code, resent.stderr).toBe(0);
    expect(resent.stdout).toContain(`${second.workflowId}: resend requested`);
    await eventually(() => h.mail.to(b).length === 2, { timeoutMs: 60_000 });
    expect(h.mail.latestLink(b)).not.toBe(firstLink);
    expect(h.mail.to(a)).toHaveLength(1);
  }, 300_000);

  it('cancels a signup whose workflow was terminated while it was pending: a fresh run expires its row', async () => {
    const address = email();
    const s = await startSignup(address);
    await h.client.workflow.getHandle(s.workflowId).terminate('operator');
    expect((await h.db('signups').where({ user_id: s.userId }).first()).state).toBe('awaiting_verification');
    const cancelled = await cli('cancel', s.workflowId);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stderr).toContain('was TERMINATED with its signup pending');
    expect(cancelled.stdout).toContain(`${s.workflowId}: {"outcome":"expired","reason":"cancelled"}`);
    expect((await h.db('signups').where({ user_id: s.userId }).first()).state).toBe('expired');
    expect(await h.db('users').where({ id: s.userId }).first()).toBeUndefined();
    expect(h.mail.to(address)).toHaveLength(1); // the fresh run mailed nothing
  }, 180_000);

  it('answers usage errors with exit code 2 and unknown workflows with 1', async () => {
    for (const args of [[], ['bogus'], ['resend'], ['cancel', 'a', 'b'], ['stuck', '--older-than', 'soon'], ['stuck', '--limit', '0'], ['stuck', '--limit', 'all'], ['stuck', '--nope']]) {
      const run = await cli(...args);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toContain('usage: npm run signups');
    }
    const missing = await cli('resend', `signup-${randomUUID()}`);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no workflow signup-');
  }, 180_000);
});
