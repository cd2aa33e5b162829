/**
 * Activities of signupWorkflow. Each one is idempotent: it checks the signup's state inside its
 * transaction, so a retry after a crash converges instead of repeating the effect. The request id
 * in audit events comes from the Temporal header (src/temporal/interceptors.ts), not from data.
 */
import type { Db } from '../db';
import { currentRequestId } from '../requestContext';
import { expireSignupRow, findSignup, newToken, recordAudit, type SignupRow } from '../db/signups';
import { emailDomain, upsertPasswordHash } from '../db/users';
import type { Logger } from '../logger';
import type { Mailer } from '../mail';
import { mapFailures } from './failures';
import { signupsCompleted, signupsExpired, signupsStarted } from '../metrics';

export interface SignupActivityDeps {
  db: Db;
  mailer: Mailer;
  log: Logger;
  publicBaseUrl: string;
}

const PENDING: SignupRow['state'][] = ['awaiting_verification', 'activating'];

/**
 * What a send leaves recorded: how many mails the signup has had and when the last went out. A
 * fresh run of a signup's workflow (after an operator terminated the old one) continues from
 * these instead of counting from zero.
 */
export interface SendResult {
  emailsSent: number;
  lastEmailSentAtMs: number | undefined;
}
const sendResult = (s: Pick<SignupRow, 'emails_sent' | 'last_email_sent_at'>): SendResult => ({
  emailsSent: s.emails_sent,
  lastEmailSentAtMs: s.last_email_sent_at?.getTime(),
});

export function createSignupActivities({ db, mailer, log, publicBaseUrl }: SignupActivityDeps) {
  return {
    /** Creates the candidate user and its details from the reserved signup row (no password: see activateSignup). */
    createCandidate: mapFailures(async ({ signupId }: { signupId: string }): Promise<void> => {
      await db.transaction(async (trx) => {
        const signup = await trx('signups').where({ id: signupId }).forUpdate().first<SignupRow | undefined>();
        if (!signup || !PENDING.includes(signup.state)) return;
        const exists = await trx('users').where({ id: signup.user_id }).first('id');
        if (exists) return;
        await trx('users').insert({
          id: signup.user_id,
          status: 'candidate',
          tenant_id: signup.tenant_id,
          identifier: signup.identifier,
          display_name: signup.display_name,
          email_domain: emailDomain(signup.email),
        });
        await trx('user_details').insert({ user_id: signup.user_id, email: signup.email });
        // No password yet: activation sets the one its confirmation chose (activateSignup). The
        // signup row keeps the latest attempt's hash for the verification mails' tokens.
        await recordAudit(trx, { type: 'signup_started', userId: signup.user_id, tenantId: signup.tenant_id, requestId: currentRequestId() });
        trx.executionPromise.then(() => signupsStarted.inc(), () => undefined);
      });
    }),

    /**
     * Emails a verification link with a new token.
     *
     * `sendNo` is the workflow's number for this send (1 for the first mail, 2 for the first
     * resend, …), so a retry of the same send is recognised:
     * - recorded as sent already (the worker died after this activity had finished but before
     *   the workflow had recorded it): nothing is sent again;
     * - not recorded (the worker died between the mail and its record, or SMTP failed): a link is
     *   sent again, and the links of this send's earlier attempts keep working.
     * Only a later send (a resend) makes the older links stop working. Runs started before
     * LOCAL_MAIL_PATCH pass no `sendNo`: every call rotates the token, as it did then.
     */
    sendVerificationEmail: mapFailures(async ({ signupId, sendNo }: { signupId: string; sendNo?: number }): Promise<SendResult | undefined> => {
      const signup = await findSignup(db, signupId);
      if (!signup || !PENDING.includes(signup.state)) return undefined;
      if (sendNo !== undefined && signup.emails_sent >= sendNo) {
        log.info({ signupId, userId: signup.user_id, sendNo }, 'verification email already sent');
        return sendResult(signup);
      }
      const { token, hash } = newToken();
      await db.transaction(async (trx) => {
        const unused = trx('verification_tokens').where({ signup_id: signupId }).whereNull('used_at');
        if (sendNo === undefined) await unused.delete();
        // The tokens of earlier sends; those made after the last recorded send are this send's.
        else if (signup.last_email_sent_at) await unused.where('created_at', '<=', signup.last_email_sent_at).delete();
        // The token carries the latest attempt's password hash and name, read in this transaction:
        // the password its confirmation must match is that of the attempt this mail answers.
        await trx.raw(
          `INSERT INTO verification_tokens (id, token_hash, signup_id, expires_at, password_hash, display_name)
           SELECT ?, ?, id, expires_at, password_hash, display_name FROM signups WHERE id = ?`,
          [crypto.randomUUID(), hash, signupId],
        );
      });
      // The tenant rides along so that the page of a link that no longer works (replaced, expired)
      // offers a new one for the right tenant.
      const tenant = await db('tenants').where({ id: signup.tenant_id }).first<{ identifier: string } | undefined>('identifier');
      const link = `${publicBaseUrl}/api/v0/signups/verify?token=${token}${tenant ? `&tenant=${encodeURIComponent(tenant.identifier)}` : ''}`;
      // Nothing the requester typed (display name included) goes into mail to an address nobody
      // has proven: the service must not relay a stranger's text. The name is used after activation.
      await mailer.send({
        to: signup.email,
        subject: 'Confirm your email address',
        text: [
          'Hello,',
          '',
          'Someone asked to create an account with this email address. If it was you, open this link',
          'and confirm with the password you chose (or choose a new one there):',
          link,
          '',
          `The link expires at ${signup.expires_at.toISOString()}.`,
          'If you did not sign up, ignore this message: without a confirmation no account is created.',
        ].join('\n'),
      });
      const [updated] = await db('signups')
        .where({ id: signupId })
        .update({
          emails_sent: sendNo === undefined ? db.raw('emails_sent + 1') : db.raw('GREATEST(emails_sent, ?)', [sendNo]),
          last_email_sent_at: db.fn.now(),
          updated_at: db.fn.now(),
        })
        .returning<SignupRow[]>(['emails_sent', 'last_email_sent_at']);
      await recordAudit(db, { type: 'signup_verification_sent', userId: signup.user_id, tenantId: signup.tenant_id, requestId: currentRequestId() });
      log.info({ signupId, userId: signup.user_id, sendNo }, 'verification email sent');
      return updated ? sendResult(updated) : undefined;
    }),

    /** Activates the user with the password its confirmed token carries, in one transaction. */
    activateSignup: mapFailures(
      async ({ signupId, tokenId }: { signupId: string; tokenId: string }): Promise<'activated' | 'invalid_token'> => {
        return db.transaction(async (trx) => {
          const signup = await trx('signups').where({ id: signupId }).forUpdate().first<SignupRow | undefined>();
          if (!signup) return 'invalid_token';
          if (signup.state === 'active') return 'activated'; // a retry after the commit
          if (!PENDING.includes(signup.state)) return 'invalid_token';
          // The API claimed the token (set used_at) before it signalled: only a claimed token of
          // this signup activates it.
          const claimed = await trx('verification_tokens')
            .where({ id: tokenId, signup_id: signupId })
            .whereNotNull('used_at')
            .first<{ password_hash: string | null; display_name: string | null } | undefined>('password_hash', 'display_name');
          if (!claimed) return 'invalid_token';
          // The password is the one the confirmation chose (left on the token by claimToken): always
          // typed by whoever holds the link. A token claimed before migration 004 carries none; its
          // candidate kept the password the old createCandidate gave it.
          if (claimed.password_hash) await upsertPasswordHash(trx, signup.user_id, claimed.password_hash);
          await trx('users')
            .where({ id: signup.user_id, status: 'candidate' })
            .update({ status: 'active', ...(claimed.display_name !== null ? { display_name: claimed.display_name } : {}), updated_at: trx.fn.now() });
          await trx('signups').where({ id: signupId }).update({ state: 'active', password_hash: null, updated_at: trx.fn.now() });
          await trx('verification_tokens').where({ signup_id: signupId }).whereNull('used_at').delete();
          await recordAudit(trx, { type: 'signup_completed', userId: signup.user_id, tenantId: signup.tenant_id, requestId: currentRequestId() });
          trx.executionPromise.then(() => signupsCompleted.inc(), () => undefined);
          return 'activated';
        });
      },
    ),

    /** Marks the signup expired and removes the candidate and its tokens. */
    expireSignup: mapFailures(
      async ({ signupId, reason }: { signupId: string; reason: 'timeout' | 'cancelled' }): Promise<void> => {
        if (await expireSignupRow(db, signupId, { reason, requestId: currentRequestId() })) signupsExpired.inc();
      },
    ),

    /** "Someone tried to sign up with your address; you already have an account." */
    sendAccountExistsNotice: mapFailures(
      async ({ userId, tenantId }: { userId: string; tenantId: string }): Promise<void> => {
        const row = await db('user_details').where({ user_id: userId }).first<{ email: string } | undefined>('email');
        if (!row) return;
        await mailer.send({
          to: row.email,
          subject: 'You already have an account',
          text: [
            'Someone, probably you, tried to sign up with this email address.',
            'You already have an account, so nothing was changed.',
            'If this was not you, you can ignore this message.',
          ].join('\n'),
        });
        await recordAudit(db, { type: 'signup_existing_account_notified', userId, tenantId, requestId: currentRequestId() });
      },
    ),
  };
}
