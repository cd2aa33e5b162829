/**
 * The invariant of a create (issue: "a stored password always reaches TMC"): every committed
 * password hash of a TMC user has a notification that is delivered, or still being retried, or
 * recorded as `tmc_user_not_found`. Checked after tests and fault cases that make creates fail.
 */
import type { Client } from '@temporalio/client';
import type { Knex } from 'knex';
import { tmcUserWorkflowId } from '../../src/workflows/shared';

export interface NotificationInvariant {
  /** TMC users with a live password hash. */
  checked: number;
  delivered: number;
  tmcUserNotFound: number;
  /** No outcome yet, but the user's workflow run is open (the notification is being retried). */
  pending: number;
  /** Users with a password whose notification is neither recorded nor pending. */
  violations: Array<{ upstreamId: number; userId: string }>;
}

/** Checks the invariant over `upstreamIds`, or over every TMC user in the database. */
export async function checkNotificationInvariant(db: Knex, client: Client, upstreamIds?: number[]): Promise<NotificationInvariant> {
  let query = db('users as u')
    .join('user_passwords as p', 'p.user_id', 'u.id')
    .leftJoin('tmc_password_notifications as n', 'n.user_id', 'u.id')
    .whereNotNull('u.upstream_id')
    .whereNull('u.deleted_at')
    .whereNull('p.deleted_at')
    .select<Array<{ id: string; upstream_id: number; outcome: string | null }>>('u.id', 'u.upstream_id', 'n.outcome');
  if (upstreamIds) query = query.whereIn('u.upstream_id', upstreamIds);
  const rows = await query;
  const result: NotificationInvariant = { checked: rows.length, delivered: 0, tmcUserNotFound: 0, pending: 0, violations: [] };
  for (const row of rows) {
    if (row.outcome === 'delivered') result.delivered++;
    else if (row.outcome === 'tmc_user_not_found') result.tmcUserNotFound++;
    else if (await isRunning(client, row.upstream_id)) result.pending++;
    else result.violations.push({ upstreamId: row.upstream_id, userId: row.id });
  }
  return result;
}

async function isRunning(client: Client, upstreamId: number): Promise<boolean> {
  try {
    const description = await client.workflow.getHandle(tmcUserWorkflowId(upstreamId)).describe();
    return description.status.name === 'RUNNING';
  } catch {
    return false;
  }
}
