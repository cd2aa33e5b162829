/**
 * signupWorkflow: one signup from start to end.
 *
 * 1. Create the candidate user (from the signup row the API reserved).
 * 2. Email a verification link.
 * 3. Wait for `emailVerified`, until the signup expires; `resend` sends a fresh link.
 * 4. Verified: activate the user.  5. Expired (or cancelled): remove the candidate.
 *
 * The search attribute SignupState follows along, so operators can find stuck signups.
 */
import { condition, patched, proxyActivities, proxyLocalActivities, setHandler, sleep, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  cancelSignal,
  emailVerifiedSignal,
  resendSignal,
  SignupStateKey,
  signupStatusQuery,
  type SignupState,
  type SignupWorkflowInput,
  type SignupWorkflowResult,
} from './shared';

const db = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '1m' },
});

/**
 * The candidate is written by a local activity (one short transaction): it runs inside the first
 * workflow task instead of costing an activity round trip through the server and a workflow
 * task of its own. Runs started before this patch replay their regular activity
 * (test/histories/v1-signup-*.json); retire with `deprecatePatch` once none is open.
 */
export const LOCAL_CANDIDATE_PATCH = 'signup-local-candidate';
const localDb = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '1m' },
});

/** Mail is retried for as long as the signup lives: an SMTP outage delays the link, never loses it. */
const mailOptions = {
  startToCloseTimeout: '1m',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '5m' },
} as const;
const mail = proxyActivities<Activities>(mailOptions);

/**
 * Verification mails are sent by a local activity: the first one goes out inside the first
 * workflow task, right after the candidate, so a new signup costs one workflow task and no
 * activity round trip through the server (it cost two workflow tasks and one activity task).
 * An SMTP send is short (the mailer gives up after 10 s without a connection or greeting, 20 s
 * of socket silence); a longer one keeps the workflow task alive with heartbeats. The retry
 * policy is the same as before. Its first backoffs (2, 4, 8 s) are waited out in the worker;
 * from 16 s on (`localRetryThreshold`) each wait is a durable timer in the history, so an SMTP
 * outage neither holds a workflow task open nor hides from an operator. Runs started before this
 * patch keep their regular activity for every mail (test/histories/v2-signup-*.json); the patch
 * is checked once, right after the candidate, so a run never mixes the two.
 */
export const LOCAL_MAIL_PATCH = 'signup-local-mail';
const localMail = proxyLocalActivities<Activities>({ ...mailOptions, localRetryThreshold: '10s' });

export async function signupWorkflow(input: SignupWorkflowInput): Promise<SignupWorkflowResult> {
  const { signupId } = input;
  const verifications: string[] = [];
  let resendRequested = false;
  let cancelled = false;
  let state: SignupState = 'AwaitingVerification';
  let emailsSent = 0;
  let lastEmailSentAtMs: number | undefined;

  setHandler(emailVerifiedSignal, ({ tokenId }) => {
    if (!verifications.includes(tokenId)) verifications.push(tokenId);
  });
  setHandler(resendSignal, () => {
    resendRequested = true;
  });
  setHandler(cancelSignal, () => {
    cancelled = true;
  });
  setHandler(signupStatusQuery, () => ({ state, emailsSent, lastEmailSentAtMs }));

  const enter = (next: SignupState) => {
    state = next;
    upsertSearchAttributes([{ key: SignupStateKey, value: next }]);
  };
  // Set once, right after the candidate: local, numbered sends (the number lets the activity
  // recognise its own retries, see sendVerificationEmail), or the regular activity of old runs.
  let localMailRun = false;
  // The activity reports what the database has recorded (runs of older code got nothing back and
  // count for themselves, as before): a fresh run of a signup whose earlier run an operator
  // terminated continues the count and the resend interval instead of starting from zero. Only
  // values change here, no command, so histories of either kind replay.
  const sendLink = async () => {
    const sent = localMailRun ? await localMail.sendVerificationEmail({ signupId, sendNo: emailsSent + 1 }) : await mail.sendVerificationEmail({ signupId });
    emailsSent = sent ? Math.max(sent.emailsSent, emailsSent + 1) : emailsSent + 1;
    lastEmailSentAtMs = sent?.lastEmailSentAtMs ?? Date.now();
  };

  if (workflowInfo().typedSearchAttributes.get(SignupStateKey) !== 'AwaitingVerification') enter('AwaitingVerification');
  if (patched(LOCAL_CANDIDATE_PATCH)) await localDb.createCandidate({ signupId });
  else await db.createCandidate({ signupId });
  localMailRun = patched(LOCAL_MAIL_PATCH);
  await sendLink();

  for (;;) {
    const remaining = input.expiresAtMs - Date.now();
    const woke = remaining > 0 && (await condition(() => verifications.length > 0 || resendRequested || cancelled, remaining));
    if (!woke || cancelled) {
      const reason = cancelled ? 'cancelled' : 'timeout';
      enter('Expired');
      await db.expireSignup({ signupId, reason });
      return { outcome: 'expired', reason };
    }
    const tokenId = verifications.shift();
    if (tokenId !== undefined) {
      enter('Activating');
      const outcome = await db.activateSignup({ signupId, tokenId });
      if (outcome === 'activated') {
        enter('Active');
        return { outcome: 'active' };
      }
      // The token was rotated or expired in the meantime: keep waiting for a valid one.
      enter('AwaitingVerification');
      continue;
    }
    if (resendRequested) {
      resendRequested = false;
      if (lastEmailSentAtMs === undefined || Date.now() - lastEmailSentAtMs >= input.resendIntervalMs) await sendLink();
    }
  }
}

/** Tells the owner of an existing account that someone tried to sign up with their address. */
export async function accountExistsNoticeWorkflow(input: { userId: string; tenantId: string; resendIntervalMs: number }): Promise<void> {
  await mail.sendAccountExistsNotice({ userId: input.userId, tenantId: input.tenantId });
  // Staying open for the interval makes later attempts join this run instead of sending again.
  await sleep(input.resendIntervalMs);
}
