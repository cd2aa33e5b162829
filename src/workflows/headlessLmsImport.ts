/**
 * headlessLmsImportWorkflow: copies a headless-lms database's users, details and password hashes
 * into this service, batch by batch (`npm run import:headless-lms`, docs/switch-over.md).
 *
 * 1. Check the source (reachable, the columns the import reads) and count its users.
 * 2. Import batches in id order (keyset pagination). Each batch is one activity that reads and
 *    writes inside itself and returns only counts and conflict ids; it is recorded with its rows,
 *    so a worker killed at any point loses and duplicates nothing.
 * 3. After `batchesPerRun` batches, continue as new carrying the cursor and the counts, so no run's
 *    history grows with the size of the source (Temporal caps a run's history).
 * 4. Forget the source URL and return the report.
 *
 * Progress: the `importProgress` query, the workflow's current details in the Temporal UI, and a
 * `progress` memo (rows done / total, batch), updated after every batch. No email or name is ever
 * in the history, memo or details.
 */
import { continueAsNew, proxyActivities, setCurrentDetails, setHandler, upsertMemo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  importProgressQuery,
  ImportSourceInvalid,
  MAX_LISTED_CONFLICTS,
  type HeadlessLmsImportInput,
  type ImportCarry,
  type ImportProgress,
  type ImportReport,
} from './shared';

const activities = proxyActivities<Activities>({
  // A batch is seconds of work; the heartbeat after its read lets a dead worker's batch be retried soon.
  startToCloseTimeout: '5m',
  heartbeatTimeout: '20s',
  retry: { initialInterval: '1s', maximumInterval: '1m', nonRetryableErrorTypes: [ImportSourceInvalid] },
});

/** How long a check of an unreachable source is retried before the import fails. */
const check = proxyActivities<Activities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 5, nonRetryableErrorTypes: [ImportSourceInvalid] },
});

export async function headlessLmsImportWorkflow(input: HeadlessLmsImportInput): Promise<ImportReport> {
  let phase: ImportProgress['phase'] = input.carry ? 'importing' : 'checking';
  let carry: ImportCarry = input.carry ?? {
    total: 0,
    afterId: null,
    batchNo: 0,
    counts: { rows: 0, imported: 0, updated: 0, unchanged: 0, skipped: 0, conflicts: 0 },
    conflictList: [],
    startedAtMs: Date.now(),
  };
  const progress = (): ImportProgress => ({
    phase,
    rowsDone: carry.counts.rows,
    rowsTotal: Math.max(carry.total, carry.counts.rows),
    batch: phase === 'importing' ? carry.batchNo + 1 : carry.batchNo,
    counts: { ...carry.counts },
  });
  const publish = () => {
    const p = progress();
    setCurrentDetails(
      `**${p.phase}**: ${p.rowsDone} / ${p.rowsTotal} rows, batch ${p.batch}. ` +
        `Imported ${p.counts.imported}, updated ${p.counts.updated}, unchanged ${p.counts.unchanged}, skipped ${p.counts.skipped}, conflicts ${p.counts.conflicts}.`,
    );
  };
  setHandler(importProgressQuery, progress);

  // 1. Check and count (first run only).
  if (!input.carry) {
    publish();
    let total: number;
    try {
      ({ total } = await check.checkHeadlessLmsSource({ importId: input.importId }));
    } catch (err) {
      // Nothing was imported; the source URL is not kept for a run that ends here.
      await activities.finishHeadlessLmsImport({ importId: input.importId });
      throw err;
    }
    carry = { ...carry, total };
    phase = 'importing';
  }
  publish();

  // 2. Batches, until a short one says the source is exhausted.
  let exhausted = false;
  for (let i = 0; i < input.batchesPerRun && !exhausted; i++) {
    const r = await activities.importHeadlessLmsBatch({ importId: input.importId, batchNo: carry.batchNo, afterId: carry.afterId, limit: input.batchSize });
    const c = carry.counts;
    carry = {
      ...carry,
      afterId: r.lastId ?? carry.afterId,
      batchNo: carry.batchNo + 1,
      counts: {
        rows: c.rows + r.rows,
        imported: c.imported + r.imported,
        updated: c.updated + r.updated,
        unchanged: c.unchanged + r.unchanged,
        skipped: c.skipped + r.skipped,
        conflicts: c.conflicts + r.conflicts,
      },
      conflictList: [...carry.conflictList, ...r.conflictList].slice(0, MAX_LISTED_CONFLICTS),
    };
    exhausted = r.rows < input.batchSize;
    upsertMemo({ progress: { rowsDone: carry.counts.rows, rowsTotal: Math.max(carry.total, carry.counts.rows), batch: carry.batchNo } });
    publish();
  }

  // 3. A fresh run for the next batches.
  if (!exhausted) await continueAsNew<typeof headlessLmsImportWorkflow>({ ...input, carry });

  // 4. Done.
  phase = 'finishing';
  publish();
  await activities.finishHeadlessLmsImport({ importId: input.importId });
  phase = 'done';
  publish();
  return { ...carry.counts, total: carry.total, batches: carry.batchNo, conflictList: carry.conflictList, elapsedMs: Date.now() - carry.startedAtMs };
}
