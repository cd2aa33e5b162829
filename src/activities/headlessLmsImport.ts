/**
 * Activities of headlessLmsImportWorkflow. Each batch reads its rows from the source and writes
 * them here inside the activity: no row, email or hash goes through Temporal, only counts and
 * ids. Idempotent: a batch is recorded with its result in the same transaction as its rows, so
 * a retry returns the recorded counts (db/importedUsers.ts applyImportBatch).
 */
import { ApplicationFailure, heartbeat } from '@temporalio/activity';
import type { Db } from '../db';
import { checkSource, copySourceBatch, openSource, SourceSchemaError, type SourceDb } from '../db/headlessLms';
import { applyImportBatch, finishImportRun, importSourceUrl, recordedBatch, type BatchResult } from '../db/importedUsers';
import type { Logger } from '../logger';
import { ImportSourceInvalid } from '../workflows/shared';

export interface HeadlessLmsImportActivityDeps {
  db: Db;
  log: Logger;
}

export function createHeadlessLmsImportActivities({ db, log }: HeadlessLmsImportActivityDeps) {
  /** One read-only pool per running import in this worker, closed when the import finishes. */
  const sources = new Map<string, SourceDb>();

  async function sourceFor(importId: string): Promise<{ source: SourceDb; url: string }> {
    const url = await importSourceUrl(db, importId);
    if (url === undefined) throw ApplicationFailure.create({ type: ImportSourceInvalid, message: `import ${importId} is unknown or already finished`, nonRetryable: true });
    let source = sources.get(importId);
    if (!source) {
      source = openSource(url);
      sources.set(importId, source);
    }
    return { source, url };
  }

  return {
    /**
     * Checks the source (reachable, every column the import reads) and counts its users.
     * A wrong schema is final (ImportSourceInvalid); an unreachable source is retried.
     */
    async checkHeadlessLmsSource(input: { importId: string }): Promise<{ total: number }> {
      const { source, url } = await sourceFor(input.importId);
      try {
        const { users } = await checkSource(source, url);
        return { total: users };
      } catch (err) {
        if (err instanceof SourceSchemaError) throw ApplicationFailure.create({ type: ImportSourceInvalid, message: err.message, nonRetryable: true });
        throw err;
      }
    },

    /**
     * Batch `batchNo`: up to `limit` source users after `afterId`, written here in one
     * transaction. Returns its counts, the conflicts (ids only) and the cursor for the next batch.
     */
    async importHeadlessLmsBatch(input: { importId: string; batchNo: number; afterId: string | null; limit: number }): Promise<BatchResult> {
      // A retry of a batch that committed: its recorded result, without reading the source again.
      const recorded = await recordedBatch(db, input.importId, input.batchNo);
      if (recorded) return recorded;
      const { source } = await sourceFor(input.importId);
      // Heartbeats while the batch runs: a live worker's slow batch is not retried elsewhere, and a
      // dead worker's batch is retried within the heartbeat timeout.
      heartbeat();
      const beating = setInterval(() => heartbeat(), 5_000);
      let result: BatchResult;
      try {
        result = await applyImportBatch(db, input.importId, input.batchNo, (into) => copySourceBatch(source, input.afterId, input.limit, into));
      } finally {
        clearInterval(beating);
      }
      log.info({ importId: input.importId, batchNo: input.batchNo, rows: result.rows, imported: result.imported, updated: result.updated, conflicts: result.conflicts }, 'headless-lms import batch');
      return result;
    },

    /** Forgets the source URL and closes the source pool. Idempotent. */
    async finishHeadlessLmsImport(input: { importId: string }): Promise<void> {
      await finishImportRun(db, input.importId);
      const source = sources.get(input.importId);
      sources.delete(input.importId);
      await source?.destroy();
    },
  };
}
