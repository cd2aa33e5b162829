/**
 * What workflows and their callers share: update/signal definitions, inputs and results,
 * and workflow ids. Deterministic and I/O-free, so both the worker bundle and the API import it.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { User } from '../db/users';
import type { ImportConflict } from '../db/importedUsers';

export interface RetryBudget {
  initialIntervalMs: number;
  maximumIntervalMs: number;
  budgetMs: number;
}

/** Updates one run takes before it continues as new: well below Temporal's default cap of 2 000. */
export const DEFAULT_MAX_UPDATES_PER_RUN = 1_000;

/** The notification's state, carried into the next run: still to do, or how it ended. */
export type CarriedNotification = 'pending' | 'delivered' | 'tmc_user_not_found';

export interface TmcUserWorkflowInput {
  upstreamId: number;
  /** Retry policy for the TMC notification, fixed when the run starts. */
  notifyRetry: RetryBudget;
  /**
   * Updates (creates) a run takes before it continues as new; below the server's
   * `history.maxTotalUpdates`. Default DEFAULT_MAX_UPDATES_PER_RUN.
   */
  maxUpdatesPerRun?: number;
  /** Set by continue-as-new: the user the earlier run created and its notification's state. */
  carried?: {
    user: User;
    notification: CarriedNotification;
    /** When the notification's retry budget ends, in ms since the epoch (workflow time). */
    notifyBy?: number;
  };
}

export interface CreateUserResponse {
  user: User;
  password_set: boolean;
}

export type TmcUserWorkflowResult =
  | { outcome: 'not_created' }
  | { outcome: 'created'; userId: string; notification: 'delivered' | 'tmc_user_not_found' };

/**
 * Time an interactive step keeps after its TMC call gives up, to commit (or not) and answer its
 * caller before the caller's deadline.
 */
export const ANSWER_MARGIN_MS = 1_000;

export interface SetPasswordInput {
  /** The argon2 hash: the plaintext never reaches Temporal. */
  passwordHash: string;
  /**
   * When the caller's answer is due, in ms since the epoch. The interactive step gives up on TMC
   * in time to answer by then (504 naming TMC), instead of running past the caller's deadline.
   * Absent in updates sent before it existed.
   */
  answerBy?: number;
}

/**
 * Sets the password of the TMC user (creating the user first if needed) and returns once the
 * hash is committed.
 */
export const setPasswordUpdate = defineUpdate<CreateUserResponse, [SetPasswordInput]>('setPassword');

/** One creation workflow per TMC user, so concurrent creates for one upstream_id meet in one run. */
export function tmcUserWorkflowId(upstreamId: number): string {
  return `tmc-user-${upstreamId}`;
}

/** Failure types that activities raise and callers map to HTTP answers. */
export const FailureType = {
  TmcUserNotFound: 'TmcUserNotFound',
  TmcUnauthorized: 'TmcUnauthorized',
  TmcUnavailable: 'TmcUnavailable',
  /** TMC did not answer within the call's time (the caller's deadline, or TMC_REQUEST_TIMEOUT). */
  TmcTimeout: 'TmcTimeout',
  DatabaseUnavailable: 'DatabaseUnavailable',
  /** The attempt was given up (timed out or cancelled) before it could commit: nothing was written. */
  AttemptAbandoned: 'AttemptAbandoned',
} as const;

// ---- signup ----------------------------------------------------------------------------------

/** The search attribute operators filter on: `SignupState="AwaitingVerification"`. */
export const SignupStateKey = defineSearchAttributeKey('SignupState', SearchAttributeType.KEYWORD);
export type SignupState = 'AwaitingVerification' | 'Activating' | 'Active' | 'Expired';

/**
 * No email, name, password hash or token: the workflow works with ids only and the activities
 * read the rest from PostgreSQL.
 */
export interface SignupWorkflowInput {
  signupId: string;
  userId: string;
  tenantId: string;
  /** When the signup expires, in ms since the epoch (also the tokens' expiry). */
  expiresAtMs: number;
  resendIntervalMs: number;
}

export type SignupWorkflowResult = { outcome: 'active' } | { outcome: 'expired'; reason: 'timeout' | 'cancelled' };

export interface SignupStatus {
  state: SignupState;
  emailsSent: number;
  lastEmailSentAtMs: number | undefined;
}

/** The user clicked a valid link. Carries the token's row id, never the token. */
export const emailVerifiedSignal = defineSignal<[{ tokenId: string }]>('emailVerified');
/** Send a fresh link (the old one stops working), subject to the resend interval. */
export const resendSignal = defineSignal('resend');
/** An operator gives up on the signup: it expires now. */
export const cancelSignal = defineSignal('cancel');
export const signupStatusQuery = defineQuery<SignupStatus>('status');

/** One signup workflow per candidate user; derived from the user id, never from the email. */
export function signupWorkflowId(userId: string): string {
  return `signup-${userId}`;
}

/** Sends the "you already have an account" notice at most once per resend interval. */
export function accountExistsWorkflowId(userId: string): string {
  return `account-exists-${userId}`;
}

// ---- headless-lms import ---------------------------------------------------------------------

/** One import at a time: a second `npm run import:headless-lms` while one runs is refused. */
export const HEADLESS_LMS_IMPORT_WORKFLOW_ID = 'headless-lms-import';

/** The source's schema is not what the import reads; retrying cannot help. */
export const ImportSourceInvalid = 'ImportSourceInvalid';

export interface ImportCounts {
  /** Source rows handled so far, whatever their outcome. */
  rows: number;
  imported: number;
  updated: number;
  unchanged: number;
  /** Deleted in the source. */
  skipped: number;
  conflicts: number;
}

/** What a run carries over continue-as-new, so the counts span the whole import. */
export interface ImportCarry {
  total: number;
  /** Keyset cursor: the last source id handled. */
  afterId: string | null;
  /** The next batch's number, counting from 0 across runs. */
  batchNo: number;
  counts: ImportCounts;
  /** The first MAX_LISTED_CONFLICTS conflicts; `counts.conflicts` has them all. */
  conflictList: ImportConflict[];
  startedAtMs: number;
}

export interface HeadlessLmsImportInput {
  /** The import_runs row holding the source URL: the URL itself never enters Temporal. */
  importId: string;
  batchSize: number;
  /** Batches per workflow run before it continues as new, bounding each run's history. */
  batchesPerRun: number;
  carry?: ImportCarry;
}

export interface ImportProgress {
  phase: 'checking' | 'importing' | 'finishing' | 'done';
  rowsDone: number;
  rowsTotal: number;
  /** The batch in flight (or the last one, once done), counting from 1. */
  batch: number;
  counts: ImportCounts;
}

export interface ImportReport extends ImportCounts {
  total: number;
  batches: number;
  conflictList: ImportConflict[];
  elapsedMs: number;
}

export const MAX_LISTED_CONFLICTS = 1000;

export const importProgressQuery = defineQuery<ImportProgress>('importProgress');
