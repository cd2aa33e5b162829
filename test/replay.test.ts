/**
 * Determinism: workflow histories replay against the current workflow code.
 *
 * - test/histories/*.json were recorded from real runs (`RECORD_HISTORIES=1 npx vitest run
 *   test/replay.test.ts` writes them). Replaying them catches a change to a workflow that would
 *   break runs already in flight in production; such a change needs `patched()` or a new type.
 * - Histories made by this run replay too, so every code path exercised here is deterministic.
 * - headlessLmsImport-*.json: the first and the last run of an import that continued as new.
 * - test/histories/v1-*.json come from before LOCAL_INTERACTIVE_PATCH (tmcUserWorkflow) and
 *   LOCAL_CANDIDATE_PATCH (signupWorkflow), v2-signup-*.json from before LOCAL_MAIL_PATCH
 *   (signupWorkflow); they must keep replaying, through the unpatched paths, until those patches
 *   are deprecated.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { randomUUID } from 'node:crypto';
import { createImportRun } from '../src/db/importedUsers';
import { headlessLmsImportWorkflow } from '../src/workflows/headlessLmsImport';
import { cancelSignal, HEADLESS_LMS_IMPORT_WORKFLOW_ID, signupWorkflowId, tmcUserWorkflowId } from '../src/workflows/shared';
import { HEADLESS_LMS_HASHES } from './fixtures/headlessLmsHashes';
import { createHeadlessLmsSource, generateSourceUsers } from './support/headlessLmsSource';
import { eventually, startHarness, type Harness } from './support/harness';
import { dataConverter, parseKeys } from '../src/temporal/codec';

const DIR = path.join(__dirname, 'histories');
/** A test-only key, committed on purpose: the recorded histories are encrypted with it. */
const FIXTURE_KEYS = 'fixture:74TNHESFOApzX495eCpaIYrSyY0xfaHEGEwwaqgTx14=';
const replayOptions = () => ({ workflowBundle: { codePath: inject('workflowBundlePath') }, dataConverter: dataConverter(parseKeys(FIXTURE_KEYS)) });

let h: Harness;
const fresh: Array<{ name: string; json: string }> = [];

beforeAll(async () => {
  h = await startHarness({ env: { SIGNUP_RESEND_INTERVAL: '1s', PAYLOAD_ENCRYPTION_KEYS: FIXTURE_KEYS } });

  // tmcUserWorkflow: created and notified, with a concurrent second create and two failed notifications.
  h.tmc.addUser({ id: 9001 });
  h.tmc.notifyStatus = 500;
  await Promise.all([h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 9001, password: 'first password' }), h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 9001, password: 'second password' })]);
  await eventually(() => h.tmc.notificationAttempts(9001).length >= 2);
  h.tmc.notifyStatus = undefined;
  await h.client.workflow.getHandle(tmcUserWorkflowId(9001)).result();

  // tmcUserWorkflow: TMC answers 404 to the notification.
  h.tmc.addUser({ id: 9002 });
  h.tmc.notifyStatus = 404;
  await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 9002, password: 'gone' });
  await h.client.workflow.getHandle(tmcUserWorkflowId(9002)).result();
  h.tmc.notifyStatus = undefined;

  // signupWorkflow: resend, then verified.
  await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'replay-active@example.org', display_name: 'R', password: 'password1' } });
  await eventually(() => h.mail.to('replay-active@example.org').length === 1);
  await new Promise((r) => setTimeout(r, 1_100));
  await h.request('POST', '/api/v0/signups/resend', { body: { tenant: 'default', email: 'replay-active@example.org' } });
  await eventually(() => h.mail.to('replay-active@example.org').length === 2);
  const link = new URL(h.mail.latestLink('replay-active@example.org')!);
  await h.request('GET', link.pathname + link.search, { headers: { accept: 'application/json' } });
  const active = await h.db('signups').where({ identifier: 'replay-active@example.org' }).first();
  await h.client.workflow.getHandle(signupWorkflowId(active.user_id)).result();

  // signupWorkflow: cancelled by an operator.
  await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'replay-cancel@example.org', display_name: 'C', password: 'password1' } });
  await eventually(() => h.mail.to('replay-cancel@example.org').length === 1);
  const cancelled = await h.db('signups').where({ identifier: 'replay-cancel@example.org' }).first();
  await h.client.workflow.getHandle(signupWorkflowId(cancelled.user_id)).signal(cancelSignal);
  await h.client.workflow.getHandle(signupWorkflowId(cancelled.user_id)).result();

  // headlessLmsImportWorkflow: 5 source users in batches of 2, 2 batches a run: a first run that
  // checks the source and continues as new, then runs that import, and a last one that finishes.
  const sourceUrl = await createHeadlessLmsSource(inject('postgresAdminUrl'), `hl_replay_${Date.now()}`);
  await generateSourceUsers(sourceUrl, 5, { firstUpstreamId: 9100, hash: HEADLESS_LMS_HASHES.nfc.hash, deletedEvery: 4 });
  const importId = randomUUID();
  await createImportRun(h.db, importId, sourceUrl);
  const started = await h.client.workflow.start(headlessLmsImportWorkflow, {
    workflowId: `replay-${HEADLESS_LMS_IMPORT_WORKFLOW_ID}-${importId}`,
    taskQueue: h.config.temporal.taskQueue,
    args: [{ importId, batchSize: 2, batchesPerRun: 2 }],
  });
  await started.result();

  const runs: Array<[string, string, string?]> = [
    ['tmcUser-created-notified', tmcUserWorkflowId(9001)],
    ['tmcUser-notify-404', tmcUserWorkflowId(9002)],
    ['signup-resend-verified', signupWorkflowId(active.user_id)],
    ['signup-cancelled', signupWorkflowId(cancelled.user_id)],
    ['headlessLmsImport-first-run', started.workflowId, started.firstExecutionRunId],
    ['headlessLmsImport-last-run', started.workflowId],
  ];
  for (const [name, workflowId, runId] of runs) {
    fresh.push({ name, json: historyToJSON(await h.client.workflow.getHandle(workflowId, runId).fetchHistory()) });
  }
  if (process.env.RECORD_HISTORIES === '1') {
    for (const { name, json } of fresh) writeFileSync(path.join(DIR, `${name}.json`), json + '\n');
  }
});
afterAll(async () => {
  await h?.close();
});

describe('workflow replay', () => {
  it('replays the histories recorded in test/histories', async () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const file of files) {
      const history = historyFromJSON(JSON.parse(readFileSync(path.join(DIR, file), 'utf8')));
      await expect(Worker.runReplayHistory(replayOptions(), history, file), file).resolves.toBeUndefined();
    }
  });

  it('replays an import that continued as new: its first run and its last', async () => {
    const first = fresh.find((f) => f.name === 'headlessLmsImport-first-run')!.json;
    const last = fresh.find((f) => f.name === 'headlessLmsImport-last-run')!.json;
    expect(first).toContain('"checkHeadlessLmsSource"');
    expect(first).toContain('EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW');
    expect(last).toContain('"finishHeadlessLmsImport"');
    expect(last).not.toContain('"checkHeadlessLmsSource"');
    for (const name of ['headlessLmsImport-first-run.json', 'headlessLmsImport-last-run.json']) {
      const history = historyFromJSON(JSON.parse(readFileSync(path.join(DIR, name), 'utf8')));
      await expect(Worker.runReplayHistory(replayOptions(), history, name), name).resolves.toBeUndefined();
    }
  });

  it("replays this run's own histories", async () => {
    expect(fresh).toHaveLength(6);
    for (const { name, json } of fresh) {
      await expect(Worker.runReplayHistory(replayOptions(), historyFromJSON(JSON.parse(json)), name), name).resolves.toBeUndefined();
    }
  });

  it('replays runs from before the patch through the old path, and new runs through the patched one', async () => {
    const v1 = readdirSync(DIR).filter((f) => f.startsWith('v1-tmcUser-'));
    expect(v1).toHaveLength(2);
    for (const file of v1) {
      const text = readFileSync(path.join(DIR, file), 'utf8');
      expect(text).toContain('"fetchTmcUser"');
      expect(text).not.toContain('EVENT_TYPE_MARKER_RECORDED');
    }
    const created = fresh.find((f) => f.name === 'tmcUser-created-notified')!.json;
    expect(created).toContain('EVENT_TYPE_MARKER_RECORDED'); // the patch marker and the local activity's
    expect(created).not.toContain('"fetchTmcUser"');
    expect(created).toContain('"recordTmcNotification"');

    const scheduledIn = (json: string) =>
      (JSON.parse(json).events as Array<Record<string, any>>).filter((e) => e.activityTaskScheduledEventAttributes).map((e) => e.activityTaskScheduledEventAttributes.activityType.name as string);
    const markersIn = (json: string) =>
      (JSON.parse(json).events as Array<Record<string, any>>).filter((e) => e.eventType === 'EVENT_TYPE_MARKER_RECORDED').map((e) => e.markerRecordedEventAttributes.markerName as string);
    const signupFiles = (prefix: string) => readdirSync(DIR).filter((f) => f.startsWith(prefix)).map((f) => readFileSync(path.join(DIR, f), 'utf8'));
    expect(signupFiles('v1-signup-')).toHaveLength(2);
    for (const json of signupFiles('v1-signup-')) expect(scheduledIn(json)).toContain('createCandidate'); // a regular activity then
    expect(signupFiles('v2-signup-')).toHaveLength(2);
    for (const json of signupFiles('v2-signup-')) {
      expect(scheduledIn(json)).not.toContain('createCandidate');
      expect(scheduledIn(json)).toContain('sendVerificationEmail'); // a regular activity then
      expect(markersIn(json)).toEqual(['core_patch', 'core_local_activity']);
    }
    // Now: both patches, the candidate and both mails (first and resent) as local activities,
    // and the only regular activity is the activation.
    const now = fresh.find((f) => f.name === 'signup-resend-verified')!.json;
    expect(markersIn(now)).toEqual(['core_patch', 'core_local_activity', 'core_patch', 'core_local_activity', 'core_local_activity']);
    expect(scheduledIn(now)).toEqual(['activateSignup']);
  });

  it('detects a non-deterministic change (the check can fail)', async () => {
    const json = readFileSync(path.join(DIR, 'v1-tmcUser-created-notified.json'), 'utf8');
    // Pretend the recorded run scheduled a different activity first.
    const tampered = json.replace('"fetchTmcUser"', '"someOtherActivity"');
    expect(tampered).not.toBe(json);
    await expect(Worker.runReplayHistory(replayOptions(), historyFromJSON(JSON.parse(tampered)), 'tampered')).rejects.toThrow();
    // And a new run whose recorded notification outcome is taken out of its history.
    const fresh1 = fresh.find((f) => f.name === 'tmcUser-created-notified')!.json;
    const withoutRecord = fresh1.replace('"recordTmcNotification"', '"someOtherActivity"');
    expect(withoutRecord).not.toBe(fresh1);
    await expect(Worker.runReplayHistory(replayOptions(), historyFromJSON(JSON.parse(withoutRecord)), 'tampered-v2')).rejects.toThrow();
  });
});
