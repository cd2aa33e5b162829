/**
 * What workflows and their callers share: update/signal definitions, inputs and results,
 * and workflow ids. Deterministic and I/O-free, so both the worker bundle and the API import it.
 */
import { defineUpdate } from '@temporalio/workflow';
import type { User } from '../db/users';

export interface RetryBudget {
  initialIntervalMs: number;
  maximumIntervalMs: number;
  budgetMs: number;
}

export interface TmcUserWorkflowInput {
  upstreamId: number;
  /** Retry policy for the TMC notification, fixed when the run starts. */
  notifyRetry: RetryBudget;
}

export interface CreateUserResponse {
  user: User;
  password_set: boolean;
}

export type TmcUserWorkflowResult =
  | { outcome: 'not_created' }
  | { outcome: 'created'; userId: string; notification: 'delivered' | 'tmc_user_not_found' };

/**
 * Sets the password of the TMC user (creating the user first if needed) and returns once the
 * hash is committed. Its argument is the argon2 hash: the plaintext never reaches Temporal.
 */
export const setPasswordUpdate = defineUpdate<CreateUserResponse, [{ passwordHash: string }]>('setPassword');

/** One creation workflow per TMC user, so concurrent creates for one upstream_id meet in one run. */
export function tmcUserWorkflowId(upstreamId: number): string {
  return `tmc-user-${upstreamId}`;
}

/** Failure types that activities raise and callers map to HTTP answers. */
export const FailureType = {
  TmcUserNotFound: 'TmcUserNotFound',
  TmcUnauthorized: 'TmcUnauthorized',
  TmcUnavailable: 'TmcUnavailable',
  DatabaseUnavailable: 'DatabaseUnavailable',
} as const;
