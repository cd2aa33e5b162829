/**
 * Determinism: workflow histories replay against the current workflow code.
 *
 * - test/histories/*.json were recorded from real runs (`RECORD_HISTORIES=1 npx vitest run
 *   test/replay.test.ts` writes them). Replaying them catches a change to a workflow that would
 *   break runs already in flight in production; such a change needs `patched()` or a new type.
 * - Histories made by this run replay too, so every code path exercised here is deterministic.
 * - signup-confirm-new-password.json and signup-restarted-after-terminate.json come from the
 *   confirmation protocol (issue 12): a repeated attempt, a refused password and a new one; and a
 *   fresh run started by signal-with-start after an operator terminated the first.
 * - headlessLmsImport-*.json: the first and the last run of an import that continued as new.
 * - test/histories/v1-*.json come from before LOCAL_INTERACTIVE_PATCH (tmcUserWorkflow) and
 *   LOCAL_CANDIDATE_PATCH (signupWorkflow), v2-signup-*.json from before LOCAL_MAIL_PATCH
 *   (signupWorkflow), v2-tmcUser-*.json from before RECONCILE_PATCH and CONTINUE_AS_NEW_PATCH
 *   (tmcUserWorkflow; both came in one release); they must
 *   keep replaying, through the unpatched paths, until those patches are deprecated.
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
const confirm = (link: URL, fields: Record<string, string>) =>
  h.request('POST', '/api/v0/signups/verify', { body: { token: link.searchParams.get('token'), ...fields }, headers: { accept: 'application/json' } });

beforeAll(async () => {
  h = await startHarness({ env: { SIGNUP_RESEND_INTERVAL: '1s', PAYLOAD_ENCRYPTION_KEYS: FIXTURE_KEYS, TMC_UPDATES_PER_RUN: '3' } });

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

  // tmcUserWorkflow: TMC fails the user fetch, so the step fails and is fenced (RECONCILE_PATCH).
  h.tmc.addUser({ id: 9003 });
  h.tmc.fetchStatus = 500;
  await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 9003, password: 'never stored' });
  await h.client.workflow.getHandle(tmcUserWorkflowId(9003)).result();
  h.tmc.fetchStatus = undefined;

  // tmcUserWorkflow: 4 creates while TMC refuses the notification; the run continues as new after
  // its 3rd (TMC_UPDATES_PER_RUN) carrying the pending notification (CONTINUE_AS_NEW_PATCH).
  h.tmc.addUser({ id: 9004 });
  h.tmc.notifyStatus = 503;
  const firstRun = await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 9004, password: 'create 1' });
  const firstRunId = (await h.client.workflow.getHandle(tmcUserWorkflowId(9004)).describe()).runId;
  for (let i = 2; i <= 4; i++) await h.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: 9004, password: `create ${i}` });
  expect(firstRun.status).toBe(200);
  h.tmc.notifyStatus = undefined;
  await h.client.workflow.getHandle(tmcUserWorkflowId(9004)).result();

  // signupWorkflow: resend, then verified.
  await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'replay-active@example.org', display_name: 'R', password: 'password1' } });
  await eventually(() => h.mail.to('replay-active@example.org').length === 1);
  await new Promise((r) => setTimeout(r, 1_100));
  await h.request('POST', '/api/v0/signups/resend', { body: { tenant: 'default', email: 'replay-active@example.org' } });
  await eventually(() => h.mail.to('replay-active@example.org').length === 2);
  const link = new URL(h.mail.latestLink('replay-active@example.org')!);
  await confirm(link, { password: 'password1' });
  const active = await h.db('signups').where({ identifier: 'replay-active@example.org' }).first();
  await h.client.workflow.getHandle(signupWorkflowId(active.user_id)).result();

  // signupWorkflow, the confirmation protocol: a second attempt (its mail carries its password),
  // a wrong password refused, then a new password chosen with the newest link.
  await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'replay-confirm@example.org', display_name: 'A', password: 'first attempt' } });
  await eventually(() => h.mail.to('replay-confirm@example.org').length === 1);
  await new Promise((r) => setTimeout(r, 1_100));
  await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'replay-confirm@example.org', display_name: 'B', password: 'second attempt' } });
  await eventually(() => h.mail.to('replay-confirm@example.org').length === 2);
  const newest = new URL(h.mail.latestLink('replay-confirm@example.org')!);
  expect((await confirm(newest, { password: 'first attempt' })).status).toBe(403);
  expect((await confirm(newest, { new_password: 'chosen with the link' })).status).toBe(200);
  const confirmed = await h.db('signups').where({ identifier: 'replay-confirm@example.org' }).first();
  await h.client.workflow.getHandle(signupWorkflowId(confirmed.user_id)).result();

  // signupWorkflow terminated by an operator, then confirmed: a fresh run, started by
  // signal-with-start with the confirmation, finishes the signup.
  await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: 'replay-restart@example.org', display_name: 'T', password: 'password1' } });
  await eventually(() => h.mail.to('replay-restart@example.org').length === 1);
  const restarted = await h.db('signups').where({ identifier: 'replay-restart@example.org' }).first();
  await h.client.workflow.getHandle(signupWorkflowId(restarted.user_id)).terminate('replay test');
  expect((await confirm(new URL(h.mail.latestLink('replay-restart@example.org')!), { password: 'password1' })).status).toBe(200);
  await h.client.workflow.getHandle(signupWorkflowId(restarted.user_id)).result();

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
    ['tmcUser-fetch-failed', tmcUserWorkflowId(9003)],
    ['signup-resend-verified', signupWorkflowId(active.user_id)],
    ['signup-cancelled', signupWorkflowId(cancelled.user_id)],
    ['signup-confirm-new-password', signupWorkflowId(confirmed.user_id)],
    ['signup-restarted-after-terminate', signupWorkflowId(restarted.user_id)],
    ['headlessLmsImport-first-run', started.workflowId, started.firstExecutionRunId],
    ['headlessLmsImport-last-run', started.workflowId],
  ];
  for (const [name, workflowId, runId] of runs) {
    fresh.push({ name, json: historyToJSON(await h.client.workflow.getHandle(workflowId, runId).fetchHistory()) });
  }
  fresh.push({ name: 'tmcUser-continued-as-new', json: historyToJSON(await h.client.workflow.getHandle(tmcUserWorkflowId(9004), firstRunId).fetchHistory()) });
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
    expect(fresh).toHaveLength(10);
    for (const { name, json } of fresh) {
      await expect(Worker.runReplayHistory(replayOptions(), historyFromJSON(JSON.parse(json)), name), name).resolves.toBeUndefined();
    }
  });

  it('replays runs from before the patch through the old path, and new runs through the patched one', async () => {
    const scheduledIn = (json: string) =>
      (JSON.parse(json).events as Array<Record<string, any>>).filter((e) => e.activityTaskScheduledEventAttributes).map((e) => e.activityTaskScheduledEventAttributes.activityType.name as string);
    const markersIn = (json: string) =>
      (JSON.parse(json).events as Array<Record<string, any>>).filter((e) => e.eventType === 'EVENT_TYPE_MARKER_RECORDED').map((e) => e.markerRecordedEventAttributes.markerName as string);
    const v1 = readdirSync(DIR).filter((f) => f.startsWith('v1-tmcUser-'));
    expect(v1).toHaveLength(2);
    for (const file of v1) {
      const text = readFileSync(path.join(DIR, file), 'utf8');
      expect(text).toContain('"fetchTmcUser"');
      expect(text).not.toContain('EVENT_TYPE_MARKER_RECORDED');
    }
    // Before RECONCILE_PATCH: one patch marker; now two, and a failed step is fenced.
    const v2 = readdirSync(DIR).filter((f) => f.startsWith('v2-tmcUser-'));
    expect(v2).toHaveLength(2);
    for (const file of v2) expect(markersIn(readFileSync(path.join(DIR, file), 'utf8')).filter((m) => m === 'core_patch')).toHaveLength(1);
    const failed = fresh.find((f) => f.name === 'tmcUser-fetch-failed')!.json;
    expect(markersIn(failed).filter((m) => m === 'core_patch')).toHaveLength(3);
    // CONTINUE_AS_NEW_PATCH: a run that took its share of creates continued as new.
    const continued = JSON.parse(fresh.find((f) => f.name === 'tmcUser-continued-as-new')!.json).events as Array<Record<string, any>>;
    expect(continued.some((e) => e.eventType === 'EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW')).toBe(true);
    expect(scheduledIn(failed)).toEqual(['settleAbandonedAttempt']);
    const created = fresh.find((f) => f.name === 'tmcUser-created-notified')!.json;
    expect(created).toContain('EVENT_TYPE_MARKER_RECORDED'); // the patch marker and the local activity's
    expect(created).not.toContain('"fetchTmcUser"');
    expect(created).toContain('"recordTmcNotification"');

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

  it('records the confirmation protocol and a restart after terminate', () => {
    const events = (name: string) => (JSON.parse(readFileSync(path.join(DIR, `${name}.json`), 'utf8')).events as Array<{ eventType: string }>).map((e) => e.eventType);
    // The fresh run was started by signal-with-start carrying the confirmation.
    expect(events('signup-restarted-after-terminate').slice(0, 2)).toEqual(['EVENT_TYPE_WORKFLOW_EXECUTION_STARTED', 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED']);
    expect(events('signup-restarted-after-terminate').at(-1)).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED');
    // A resend (the second attempt) and then the confirmation.
    expect(events('signup-confirm-new-password').filter((e) => e === 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED')).toHaveLength(2);
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
