/**
 * `npm run import:headless-lms -- --source <postgres URL> [--dry-run] [--batch-size 10000]`:
 * copies a running headless-lms's users, details and password hashes into this service
 * (docs/switch-over.md).
 *
 * 1. Checks the source (reachable; every table and column the import reads) and counts its
 *    users. A failure names what is missing, and nothing is written anywhere.
 * 2. `--dry-run`: runs every batch in a transaction on this service's database that is rolled
 *    back, and prints the counts and conflicts. Nothing is written, no workflow is started.
 * 3. Otherwise: registers the run (its source URL stays in PostgreSQL, never in Temporal), starts
 *    headlessLmsImportWorkflow (one at a time), draws a progress bar from its `importProgress`
 *    query, and prints the report. Interrupting the command does not stop the import; running
 *    it again later re-imports only what changed.
 *
 * Reads DATABASE_URL (this service's database), TEMPORAL_ADDRESS (default 127.0.0.1:7233),
 * TEMPORAL_NAMESPACE (default `default`), TEMPORAL_TASK_QUEUE (default `accounts`) and
 * PAYLOAD_ENCRYPTION_KEYS (or, in development, the key `npm start` keeps in .data/).
 * Exit codes: 0 done (conflicts are reported, not failures), 1 failure, 2 usage.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { createDb, type Db } from '../db';
import { checkSource, copySourceBatch, describeSourceUrl, openSource, SourceSchemaError, SourceUnavailableError } from '../db/headlessLms';
import { createImportRun, dryRunImportBatch, finishImportRun } from '../db/importedUsers';
import { createTemporalClient } from '../temporal/client';
import { loadTemporalConnection } from '../temporal/connection';
import { loadKeys } from '../temporal/codec';
import {
  HEADLESS_LMS_IMPORT_WORKFLOW_ID,
  importProgressQuery,
  MAX_LISTED_CONFLICTS,
  type ImportCounts,
  type ImportProgress,
  type ImportReport,
} from '../workflows/shared';

const USAGE = [
  'usage: npm run import:headless-lms -- --source <postgres://user:pass@host:port/db> [--dry-run] [--batch-size <n>]',
  '  --source      the headless-lms database; only read, in read-only transactions',
  '  --dry-run     print what an import would do (counts and conflicts) without writing anything',
  '  --batch-size  users per batch (default 10000)',
].join('\n');

export const DEFAULT_BATCH_SIZE = 10_000;
/** Batches per workflow run before it continues as new (~8 history events each): 1 000 000 users a run. */
export const DEFAULT_BATCHES_PER_RUN = 100;

class UsageError extends Error {}
/** `--help`: the usage, and exit 0. */
class HelpRequested extends Error {}

export interface ImportOptions {
  sourceUrl: string;
  batchSize?: number;
  batchesPerRun?: number;
  /** Called with each progress reading (about twice a second). */
  onProgress?: (p: ImportProgress) => void;
}

/**
 * Checks the source; throws SourceUnavailableError or SourceSchemaError (nothing written).
 * Returns the number of users it holds.
 */
export async function preflight(sourceUrl: string): Promise<number> {
  const source = openSource(sourceUrl, 1);
  try {
    return (await checkSource(source, sourceUrl)).users;
  } finally {
    await source.destroy();
  }
}

/** The dry run: every batch computed on `db` in a transaction that is rolled back. */
export async function dryRun(db: Db, { sourceUrl, batchSize = DEFAULT_BATCH_SIZE, onProgress }: ImportOptions): Promise<ImportReport> {
  const started = Date.now();
  const total = await preflight(sourceUrl);
  const source = openSource(sourceUrl, 1);
  const counts: ImportCounts = { rows: 0, imported: 0, updated: 0, unchanged: 0, skipped: 0, conflicts: 0 };
  const conflictList: ImportReport['conflictList'] = [];
  let afterId: string | null = null;
  let batches = 0;
  try {
    for (;;) {
      onProgress?.({ phase: 'importing', rowsDone: counts.rows, rowsTotal: Math.max(total, counts.rows), batch: batches + 1, counts: { ...counts } });
      const cursor: string | null = afterId;
      const r = await dryRunImportBatch(db, (into) => copySourceBatch(source, cursor, batchSize, into));
      batches++;
      for (const k of Object.keys(counts) as Array<keyof ImportCounts>) counts[k] += r[k];
      conflictList.push(...r.conflictList.slice(0, MAX_LISTED_CONFLICTS - conflictList.length));
      afterId = r.lastId ?? afterId;
      if (r.rows < batchSize) break;
    }
  } finally {
    await source.destroy();
  }
  onProgress?.({ phase: 'done', rowsDone: counts.rows, rowsTotal: Math.max(total, counts.rows), batch: batches, counts: { ...counts } });
  return { ...counts, total, batches, conflictList, elapsedMs: Date.now() - started };
}

/**
 * The import: registers the run, starts the workflow on `taskQueue`, follows its progress and
 * returns its report. Throws WorkflowExecutionAlreadyStartedError if an import is running.
 */
export async function runImport(db: Db, client: Client, taskQueue: string, options: ImportOptions): Promise<ImportReport> {
  await preflight(options.sourceUrl);
  const importId = randomUUID();
  await createImportRun(db, importId, options.sourceUrl);
  let handle;
  try {
    handle = await client.workflow.start('headlessLmsImportWorkflow', {
      workflowId: HEADLESS_LMS_IMPORT_WORKFLOW_ID,
      taskQueue,
      args: [{ importId, batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE, batchesPerRun: options.batchesPerRun ?? DEFAULT_BATCHES_PER_RUN }],
      workflowIdConflictPolicy: 'FAIL',
      staticSummary: 'Import of users from a headless-lms database',
    });
  } catch (err) {
    await finishImportRun(db, importId);
    throw err;
  }
  let polling = true;
  let wake: () => void = () => undefined;
  const poll = (async () => {
    while (polling) {
      try {
        // Without a run id the handle follows the chain of continued-as-new runs.
        options.onProgress?.(await client.workflow.getHandle(HEADLESS_LMS_IMPORT_WORKFLOW_ID).query(importProgressQuery));
      } catch {
        // Between two runs, or while no worker answers: the next reading will do.
      }
      if (polling) await new Promise<void>((r) => ((wake = r), setTimeout(r, 500)));
    }
  })();
  try {
    return (await handle.result()) as ImportReport;
  } finally {
    polling = false;
    wake();
    await poll;
    await finishImportRun(db, importId).catch(() => undefined);
  }
}

/** `[#########-----------]  45%  45000/100000 rows, batch 23`. */
export function progressLine(p: ImportProgress, width = 30): string {
  const fraction = p.rowsTotal > 0 ? Math.min(1, p.rowsDone / p.rowsTotal) : p.phase === 'done' ? 1 : 0;
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%  ${p.rowsDone}/${p.rowsTotal} rows, batch ${p.batch}`;
}

/** The final report, one fact a line. */
export function formatReport(r: ImportReport, { sourceUrl, dryRun: dry }: { sourceUrl: string; dryRun: boolean }): string {
  const lines = [
    dry ? 'headless-lms import, DRY RUN: nothing was written' : 'headless-lms import done',
    `source:     ${describeSourceUrl(sourceUrl)}`,
    `rows:       ${r.rows} of ${r.total} in ${r.batches} batch(es)`,
    `imported:   ${r.imported}`,
    `updated:    ${r.updated}`,
    `unchanged:  ${r.unchanged}`,
    `skipped:    ${r.skipped} (deleted in the source)`,
    `conflicts:  ${r.conflicts}`,
    `elapsed:    ${(r.elapsedMs / 1000).toFixed(1)} s (${r.elapsedMs > 0 ? Math.round((r.rows / r.elapsedMs) * 1000) : r.rows} rows/s)`,
  ];
  for (const c of r.conflictList) {
    const what = c.reason === 'upstream_id_taken' ? `upstream_id ${c.upstreamId} already belongs to user ${c.existingId} here` : `user ${c.existingId} was deleted here`;
    lines.push(`  conflict: ${c.id}: ${what}; not imported`);
  }
  if (r.conflicts > r.conflictList.length) lines.push(`  … and ${r.conflicts - r.conflictList.length} more conflict(s)`);
  return lines.join('\n');
}

function parseArgs(argv: string[]): { sourceUrl: string; dryRun: boolean; batchSize: number } {
  let sourceUrl: string | undefined;
  let dry = false;
  let batchSize = DEFAULT_BATCH_SIZE;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i];
    if (flag === '--source') sourceUrl = value();
    else if (flag === '--dry-run') dry = true;
    else if (flag === '--batch-size') {
      const v = value();
      batchSize = /^\d+$/.test(v ?? '') ? Number(v) : Number.NaN;
      if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 50_000) throw new UsageError(`--batch-size: expected a whole number from 1 to 50000, got "${v ?? ''}"`);
    } else if (flag === '-h' || flag === '--help') throw new HelpRequested();
    else throw new UsageError(`unknown argument ${flag}`);
  }
  if (!sourceUrl) throw new UsageError('--source is required');
  if (!/^postgres(ql)?:\/\//.test(sourceUrl)) throw new UsageError('--source: expected a postgres:// URL');
  return { sourceUrl, dryRun: dry, batchSize };
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) throw new UsageError("DATABASE_URL (this service's database) is required");
  const tty = process.stderr.isTTY;
  let lastStep = -1;
  const onProgress = (p: ImportProgress) => {
    if (tty) {
      process.stderr.write(`\r${progressLine(p)}`);
      return;
    }
    // Not a terminal (a log, CI): one line per 10 %.
    const step = p.rowsTotal > 0 ? Math.floor((10 * p.rowsDone) / p.rowsTotal) : 0;
    if (step > lastStep) {
      lastStep = step;
      process.stderr.write(`${progressLine(p)}\n`);
    }
  };
  const db = createDb({ url: databaseUrl, poolMax: 2 });
  try {
    let report: ImportReport;
    if (args.dryRun) {
      report = await dryRun(db, { sourceUrl: args.sourceUrl, batchSize: args.batchSize, onProgress });
    } else {
      const keys = loadKeys({ spec: process.env.PAYLOAD_ENCRYPTION_KEYS || undefined, production: process.env.NODE_ENV === 'production' });
      // Temporal's environment configuration, as the service reads it; a local dev server by default.
      const temporal = loadTemporalConnection(process.env);
      if (!temporal.ok) throw new Error(`invalid Temporal configuration:\n${temporal.problems.map((p) => `  ${p}`).join('\n')}`);
      const client = createTemporalClient({ ...temporal.connection, address: temporal.connection.address ?? '127.0.0.1:7233' }, keys);
      try {
        report = await runImport(db, client, process.env.TEMPORAL_TASK_QUEUE || 'accounts', { sourceUrl: args.sourceUrl, batchSize: args.batchSize, onProgress });
      } finally {
        await client.connection.close().catch(() => undefined);
      }
    }
    onProgress({ phase: 'done', rowsDone: report.rows, rowsTotal: Math.max(report.total, report.rows), batch: report.batches, counts: report });
    if (tty) process.stderr.write('\n');
    console.log(formatReport(report, { sourceUrl: args.sourceUrl, dryRun: args.dryRun }));
    return 0;
  } finally {
    await db.destroy();
  }
}

/** The one-line reason for a failure, without stack traces or the source's password. */
function describeFailure(err: unknown): string {
  if (err instanceof SourceSchemaError || err instanceof SourceUnavailableError) return `${err.message}\nNothing was written.`;
  if (err instanceof WorkflowExecutionAlreadyStartedError) return `an import is already running (workflow ${HEADLESS_LMS_IMPORT_WORKFLOW_ID}); wait for it, or look at it in the Temporal UI`;
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) if (e.message && !parts.includes(e.message)) parts.push(e.message);
  return parts.join(': ') || String(err);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      if (err instanceof HelpRequested) {
        console.log(USAGE);
        process.exit(0);
      }
      if (err instanceof UsageError) {
        console.error(`${err.message}\n${USAGE}`);
        process.exit(2);
      }
      console.error(`import failed: ${describeFailure(err)}`);
      process.exit(1);
    },
  );
}
