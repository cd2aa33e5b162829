/**
 * `npm run import:headless-lms` (issue 13 §1) against a headless-lms database built from the
 * issue's columns, a second database on the test PostgreSQL: dry run, import, re-import,
 * changed rows and conflicts, a wrong or unreachable source, a worker SIGKILLed halfway, and
 * logging in through the TMC endpoint with every kind of imported hash.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runImport } from '../src/cli/importHeadlessLms';
import type { Writable } from 'node:stream';
import { copySourceBatch, openSource } from '../src/db/headlessLms';
import { applyImportBatch, createImportRun } from '../src/db/importedUsers';
import { freePort } from '../src/dev/ports';
import { PROJECT_ROOT } from '../src/dev/temporalServer';
import { DEV_KEY_FILE } from '../src/temporal/codec';
import { hasCurrentParameters } from '../src/passwords';
import { HEADLESS_LMS_IMPORT_WORKFLOW_ID, type ImportProgress, type ImportReport } from '../src/workflows/shared';
import { HEADLESS_LMS_HASHES as H } from './fixtures/headlessLmsHashes';
import { createHeadlessLmsSource, generateSourceUsers, insertSourceUsers, SOURCE_SCHEMA, withSource, type SourceUser } from './support/headlessLmsSource';
import { eventually, startHarness, type Harness } from './support/harness';
import { startWorkerProcess } from './support/workerProcess';

let h: Harness;
let sourceUrl: string;
const dbName = () => `hl_${randomUUID().replace(/-/g, '').slice(0, 12)}`;

const T1 = '2021-03-04 05:06:07.123456+00';
const T2 = '2022-08-09 10:11:12.654321+00';
/** One user per kind of row a switch-over meets. */
const users = {
  nfc: { id: randomUUID(), upstreamId: 9101, email: 'nfc@example.org', firstName: 'Nora', lastName: 'Nfc', createdAt: T1, updatedAt: T2, password: { hash: H.nfc.hash, createdAt: T1, updatedAt: T2 } },
  raw: { id: randomUUID(), upstreamId: 9102, email: 'raw@example.org', password: { hash: H.raw.hash, createdAt: T1, updatedAt: T1 } },
  legacy: { id: randomUUID(), upstreamId: 9103, email: 'legacy@example.org', password: { hash: H.legacy.hash, createdAt: T1, updatedAt: T1 } },
  legacyRaw: { id: randomUUID(), upstreamId: 9104, email: 'legacy-raw@example.org', password: { hash: H.legacyRaw.hash } },
  long: { id: randomUUID(), upstreamId: 9105, email: 'long@example.org', password: { hash: H.long.hash } },
  passwordless: { id: randomUUID(), upstreamId: 9106, email: 'nopassword@example.org' },
  passwordDeleted: { id: randomUUID(), upstreamId: 9107, email: 'pwdeleted@example.org', password: { hash: H.nfc.hash, deletedAt: T2 } },
  noUpstream: { id: randomUUID(), upstreamId: null, email: 'course-only@example.org', password: { hash: H.nfc.hash } },
  deleted: { id: randomUUID(), upstreamId: 9109, email: 'gone@example.org', deletedAt: T2, password: { hash: H.nfc.hash } },
} satisfies Record<string, SourceUser>;
const LIVE = Object.keys(users).length - 1;

beforeAll(async () => {
  h = await startHarness();
  sourceUrl = await createHeadlessLmsSource(inject('postgresAdminUrl'), dbName());
  await insertSourceUsers(sourceUrl, Object.values(users));
}, 60_000);
afterAll(async () => {
  await h?.close();
});

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  report: Record<string, number>;
}

function cli(...args: string[]): Promise<CliRun> {
  const keys = h.config.temporal.encryptionKeys ?? readFileSync(DEV_KEY_FILE, 'utf8').trim();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', 'src/cli/importHeadlessLms.ts', ...args], {
      cwd: PROJECT_ROOT,
      env: {
        ...process.env,
        DATABASE_URL: h.env.DATABASE_URL,
        TEMPORAL_ADDRESS: inject('temporalAddress'),
        TEMPORAL_NAMESPACE: h.config.temporal.namespace,
        TEMPORAL_TASK_QUEUE: h.config.temporal.taskQueue,
        PAYLOAD_ENCRYPTION_KEYS: keys,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const report: Record<string, number> = {};
      for (const m of stdout.matchAll(/^(imported|updated|unchanged|skipped|conflicts):\s+(\d+)/gm)) report[m[1]!] = Number(m[2]);
      resolve({ code, stdout, stderr, report });
    });
  });
}

/** Everything the import writes, as text, to compare before and after. */
async function snapshot(): Promise<string> {
  const rows = await h.db.raw(
    `SELECT u.id, u.created_at::text, u.updated_at::text, u.deleted_at::text, u.upstream_id, u.email_domain, d.email, d.first_name, d.last_name,
            p.password_hash, p.created_at::text AS p_created, p.updated_at::text AS p_updated, p.deleted_at::text AS p_deleted
     FROM users u LEFT JOIN user_details d ON d.user_id = u.id LEFT JOIN user_passwords p ON p.user_id = u.id ORDER BY u.id`,
  );
  return JSON.stringify(rows.rows);
}

const authenticate = async (user_id: string, password: string) => (await h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id, password })).text;
const storedHash = async (id: string) => (await h.db('user_passwords').where({ user_id: id }).first())?.password_hash as string | undefined;

describe('npm run import:headless-lms', () => {
  it('--dry-run prints the counts and writes nothing', async () => {
    const before = await snapshot();
    const run = await cli('--source', sourceUrl, '--dry-run', '--batch-size', '4');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('DRY RUN: nothing was written');
    expect(run.report).toEqual({ imported: LIVE, updated: 0, unchanged: 0, skipped: 1, conflicts: 0 });
    expect(run.stdout).toMatch(new RegExp(`rows:\\s+${LIVE + 1} of ${LIVE + 1} in 3 batch`));
    expect(run.stdout).not.toContain('postgres:postgres@'); // the source's password
    expect(await snapshot()).toBe(before);
    expect(await h.db('import_runs').count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);
    console.log(`dry run on the test database:\n${run.stdout}`);
  }, 60_000);

  it('imports every live user with its id, timestamps, details and hash, skipping deleted ones, with a progress bar', async () => {
    const run = await cli('--source', sourceUrl, '--batch-size', '4');
    expect(run.code, run.stderr).toBe(0);
    expect(run.report).toEqual({ imported: LIVE, updated: 0, unchanged: 0, skipped: 1, conflicts: 0 });
    expect(run.stderr).toMatch(/\[#+\] 100%\s+9\/9 rows/);
    expect(run.stdout).toMatch(/elapsed:\s+\d+\.\d s/);

    const nfc = (await h.db.raw('SELECT u.created_at::text, u.updated_at::text, u.upstream_id, u.email_domain, u.status, d.email, d.first_name, d.last_name, p.password_hash, p.updated_at::text AS p_updated FROM users u JOIN user_details d ON d.user_id = u.id JOIN user_passwords p ON p.user_id = u.id WHERE u.id = ?', [users.nfc.id])).rows[0];
    expect(nfc).toEqual({
      created_at: '2021-03-04 05:06:07.123456+00',
      updated_at: '2022-08-09 10:11:12.654321+00',
      upstream_id: 9101,
      email_domain: 'example.org',
      status: 'active',
      email: 'nfc@example.org',
      first_name: 'Nora',
      last_name: 'Nfc',
      password_hash: H.nfc.hash,
      p_updated: '2022-08-09 10:11:12.654321+00',
    });
    expect(await h.db('users').whereIn('id', Object.values(users).map((u) => u.id)).count<{ count: string }[]>('* as count')).toEqual([{ count: String(LIVE) }]);
    expect(await h.db('users').where({ id: users.deleted.id }).first()).toBeUndefined();
    expect(await storedHash(users.passwordless.id)).toBeUndefined();
    expect(await storedHash(users.passwordDeleted.id)).toBeUndefined();
    // The status endpoint TMC's admin UI calls now knows them.
    const status = await h.tmcRequest('GET', '/api/v0/tmc-server/users-by-upstream-id/9102/status');
    expect(status.body).toEqual({ shadow_user_exists: true, courses_mooc_fi_user_id: users.raw.id, password_set: true, deleted_at: null });
    // The source URL (with its password) is not kept once the import is done.
    expect(await h.db('import_runs').whereNotNull('source_url').count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);
  }, 90_000);

  it('changes nothing when run again', async () => {
    const before = await snapshot();
    const run = await cli('--source', sourceUrl);
    expect(run.code, run.stderr).toBe(0);
    expect(run.report).toEqual({ imported: 0, updated: 0, unchanged: LIVE, skipped: 1, conflicts: 0 });
    expect(await snapshot()).toBe(before);
  }, 60_000);

  it('authenticates every imported kind of hash through the TMC endpoint, and upgrades the old ones', async () => {
    expect(await authenticate(users.nfc.id, H.nfc.password)).toBe('true');
    expect(await storedHash(users.nfc.id)).toBe(H.nfc.hash);
    expect(await authenticate(users.long.id, H.long.password)).toBe('true');
    expect(await authenticate(users.raw.id, H.raw.password)).toBe('true');
    expect(await authenticate(users.legacy.id, H.legacy.password)).toBe('true');
    expect(await authenticate(users.legacyRaw.id, H.legacyRaw.password)).toBe('true');
    for (const u of [users.raw, users.legacy, users.legacyRaw]) {
      const after = await storedHash(u.id);
      expect(after).not.toBe(u.password.hash);
      expect(hasCurrentParameters(after!)).toBe(true);
    }
    // The upgraded hashes verify with the NFC form too.
    expect(await authenticate(users.raw.id, H.raw.password.normalize('NFC'))).toBe('true');
    expect(await authenticate(users.passwordless.id, 'anything')).toBe('false');
    expect(await authenticate(users.nfc.id, 'wrong')).toBe('false');

    // A later import keeps the upgraded hashes: they are newer here than in the source.
    const upgraded = await storedHash(users.legacy.id);
    const run = await cli('--source', sourceUrl);
    expect(run.report).toEqual({ imported: 0, updated: 0, unchanged: LIVE, skipped: 1, conflicts: 0 });
    expect(await storedHash(users.legacy.id)).toBe(upgraded);
  }, 90_000);

  it('takes newer rows from the source and reports conflicts without writing them', async () => {
    // Here, a user TMC created after the first import, holding upstream id 9200, and an imported user deleted here since.
    const localId = randomUUID();
    await h.db('users').insert({ id: localId, upstream_id: 9200, email_domain: 'here.org' });
    await h.db('users').where({ id: users.noUpstream.id }).update({ deleted_at: new Date() });
    const newer = randomUUID();
    await insertSourceUsers(sourceUrl, [
      { id: randomUUID(), upstreamId: 9200, email: 'clash@example.org', password: { hash: H.nfc.hash } },
      { id: newer, upstreamId: 9201, email: 'new@example.org', password: { hash: H.nfc.hash } },
    ]);
    await withSource(sourceUrl, async (c) => {
      await c.query(`UPDATE users SET email_domain = 'moved.org', updated_at = now() WHERE id = $1`, [users.nfc.id]);
      await c.query(`UPDATE user_details SET email = 'nora@moved.org' WHERE user_id = $1`, [users.nfc.id]);
      await c.query(`UPDATE user_passwords SET password_hash = $2, updated_at = now() WHERE user_id = $1`, [users.long.id, H.legacy.hash]);
    });
    // The dry run predicts exactly what the import then does.
    const before = await snapshot();
    const dry = await cli('--source', sourceUrl, '--dry-run');
    expect(await snapshot()).toBe(before);
    console.log(`dry run with changes and conflicts:\n${dry.stdout}`);
    const run = await cli('--source', sourceUrl);
    expect(run.code, run.stderr).toBe(0);
    expect(run.report).toEqual({ imported: 1, updated: 2, unchanged: LIVE - 3, skipped: 1, conflicts: 2 });
    expect(dry.report).toEqual(run.report);
    expect(dry.stdout.split('\n').filter((l) => l.includes('conflict:'))).toEqual(run.stdout.split('\n').filter((l) => l.includes('conflict:')));
    expect(run.stdout).toMatch(new RegExp(`conflict: [0-9a-f-]{36}: upstream_id 9200 already belongs to user ${localId} here; not imported`));
    expect(run.stdout).toContain(`conflict: ${users.noUpstream.id}: user ${users.noUpstream.id} was deleted here; not imported`);
    expect(await h.db('users').where({ id: users.noUpstream.id }).first('deleted_at')).not.toEqual({ deleted_at: null });
    expect(run.stdout).not.toContain('clash@example.org');
    expect(await h.db('users').where({ upstream_id: 9200 }).select('id')).toEqual([{ id: localId }]);
    expect(await h.db('user_details').where({ user_id: users.nfc.id }).first('email')).toEqual({ email: 'nora@moved.org' });
    expect(await h.db('users').where({ id: users.nfc.id }).first('email_domain')).toEqual({ email_domain: 'moved.org' });
    expect(await storedHash(users.long.id)).toBe(H.legacy.hash);
    expect(await h.db('users').where({ id: newer }).first('upstream_id')).toEqual({ upstream_id: 9201 });
  }, 60_000);

  it('only reads the source: its sessions refuse writes, and an import leaves it as it was', async () => {
    const source = openSource(sourceUrl);
    try {
      await expect(source.raw(`UPDATE users SET email_domain = 'x' WHERE id = ?`, [users.nfc.id])).rejects.toThrow(/read-only transaction/);
    } finally {
      await source.destroy();
    }
    const dump = () => withSource(sourceUrl, async (c) => JSON.stringify((await c.query('SELECT u.*, d.*, p.* FROM users u LEFT JOIN user_details d ON d.user_id = u.id LEFT JOIN user_passwords p ON p.user_id = u.id ORDER BY u.id')).rows));
    const before = await dump();
    const run = await cli('--source', sourceUrl);
    expect(run.code, run.stderr).toBe(0);
    expect(await dump()).toBe(before);
  }, 60_000);

  it('refuses a source with a different schema, naming what is missing, and writes nothing', async () => {
    const odd = await createHeadlessLmsSource(inject('postgresAdminUrl'), dbName(), SOURCE_SCHEMA.replace('  deleted_at timestamptz NULL\n);', '  removed_at timestamptz NULL\n);').replace(/CREATE TABLE user_details[\s\S]*?\);/, ''));
    const before = await snapshot();
    const runs = await h.db('import_runs').count<{ count: string }[]>('* as count');
    const run = await cli('--source', odd);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('missing: table user_details, user_passwords.deleted_at');
    expect(run.stderr).toContain('Nothing was written.');
    expect(await snapshot()).toBe(before);
    expect(await h.db('import_runs').count<{ count: string }[]>('* as count')).toEqual(runs);
  }, 60_000);

  it('refuses an unreachable source with a clear error that does not show its password', async () => {
    const run = await cli('--source', 'postgres://importer:s3cret-pw@127.0.0.1:1/headless_lms');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/cannot read the source database postgres:\/\/importer@127\.0\.0\.1:1\/headless_lms/);
    expect(run.stderr).not.toContain('s3cret-pw');
  }, 60_000);
});

describe('a batch retried after its commit (its acknowledgement lost)', () => {
  it('returns the counts recorded with the commit, and writes nothing twice', async () => {
    const src = await createHeadlessLmsSource(inject('postgresAdminUrl'), dbName());
    await generateSourceUsers(src, 30, { firstUpstreamId: 300_000, hash: H.nfc.hash, deletedEvery: 10 });
    const importId = randomUUID();
    await createImportRun(h.db, importId, src);
    const source = openSource(src);
    try {
      const load = (into: Writable) => copySourceBatch(source, null, 100, into);
      const first = await applyImportBatch(h.db, importId, 0, load);
      expect(first).toMatchObject({ rows: 30, imported: 27, skipped: 3, unchanged: 0 });
      const retried = await applyImportBatch(h.db, importId, 0, load);
      expect(retried).toEqual(first);
      // A new batch number over the same rows is a re-import: everything unchanged.
      expect(await applyImportBatch(h.db, importId, 1, load)).toMatchObject({ rows: 30, imported: 0, unchanged: 27, skipped: 3 });
      expect(await h.db('users').whereBetween('upstream_id', [300_000, 300_029]).count<{ count: string }[]>('* as count')).toEqual([{ count: '27' }]);
    } finally {
      await source.destroy();
    }
  });
});

describe('an import whose worker is SIGKILLed halfway', () => {
  let worker: ChildProcess | undefined;
  afterAll(() => {
    if (worker && worker.exitCode === null) worker.kill('SIGKILL');
  });

  it('resumes on another worker with exact counts: nothing lost, nothing twice', async () => {
    const big = await createHeadlessLmsSource(inject('postgresAdminUrl'), dbName());
    const N = 6000;
    await generateSourceUsers(big, N, { firstUpstreamId: 100_000, hash: H.nfc.hash, deletedEvery: 10 });

    await h.stopWorker();
    const [metricsPort, sdkPort] = [await freePort(), await freePort()];
    ({ child: worker } = await startWorkerProcess({ ...h.env, WORKER_METRICS_PORT: String(metricsPort), TEMPORAL_SDK_METRICS_ADDRESS: `127.0.0.1:${sdkPort}` }));

    // 60 batches of 100, 7 per workflow run: it also continues as new eight times.
    const readings: ImportProgress[] = [];
    const reportPromise = runImport(h.db, h.client, h.config.temporal.taskQueue, { sourceUrl: big, batchSize: 100, batchesPerRun: 7, onProgress: (p) => readings.push(p) });
    reportPromise.catch(() => undefined);
    await eventually(async () => Number((await h.db('import_batches').count<{ count: string }[]>('* as count'))[0]!.count) >= 15, { timeoutMs: 60_000, intervalMs: 20, what: 'a quarter of the batches' });
    const exited = once(worker, 'exit');
    worker.kill('SIGKILL');
    await exited;
    const doneWhenKilled = Number((await h.db('import_batches').count<{ count: string }[]>('* as count'))[0]!.count);
    expect(doneWhenKilled).toBeLessThan(60);

    await h.startWorker();
    const report: ImportReport = await reportPromise;
    expect(report).toMatchObject({ rows: N, total: N, imported: N - N / 10, skipped: N / 10, updated: 0, unchanged: 0, conflicts: 0, batches: 61 });
    const imported = await h.db('users').whereBetween('upstream_id', [100_000, 100_000 + N - 1]).count<{ count: string }[]>('* as count');
    expect(imported).toEqual([{ count: String(N - N / 10) }]);
    const passwords = await h.db('user_passwords as p').join('users as u', 'u.id', 'p.user_id').whereBetween('u.upstream_id', [100_000, 100_000 + N - 1]).count<{ count: string }[]>('* as count');
    expect(passwords).toEqual([{ count: String(N - N / 10) }]);
    // 61 batches at 7 a run: the chain continued as new eight times before it completed.
    const handle = h.client.workflow.getHandle(HEADLESS_LMS_IMPORT_WORKFLOW_ID);
    const description = await handle.describe();
    expect(description.status.name).toBe('COMPLETED');

    // Progress as the CLI saw it (the importProgress query), and as the Temporal UI shows it.
    expect(readings.some((p) => p.phase === 'importing' && p.rowsDone > 0 && p.rowsDone < N && p.rowsTotal === N && p.batch > 1)).toBe(true);
    expect(description.memo).toEqual({ progress: { rowsDone: N, rowsTotal: N, batch: 61 } });
    const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    expect(metadata.currentDetails).toContain(`**done**: ${N} / ${N} rows`);
    expect(JSON.stringify(description.memo) + metadata.currentDetails).not.toMatch(/@example\.org/);
  }, 240_000);
});
