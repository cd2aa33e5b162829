/**
 * Where a create's time goes inside Temporal, read from its workflow history: how many workflow
 * tasks and activities ran before the update's answer, and how long each waited in its queue and
 * ran. Event times are the server's, so they include the worker's round trips but not the API's.
 */
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

const E = temporal.api.enums.v1.EventType;

export interface CreateBreakdown {
  /** From the start of the run to the update's completion, in ms (server clock). */
  startToUpdateCompletedMs: number;
  workflowTasks: number;
  /** Summed over the workflow tasks before the update completed. */
  workflowTaskQueueMs: number;
  workflowTaskRunMs: number;
  activities: number;
  activityQueueMs: number;
  activityRunMs: number;
  /** Local activities (markers) recorded before the update completed; they run inside a workflow task. */
  localActivities: number;
}

const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;

export async function createBreakdown(client: Client, workflowId: string): Promise<CreateBreakdown | undefined> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  const start = events[0] ? ms(events[0].eventTime) : 0;
  const out: CreateBreakdown = { startToUpdateCompletedMs: 0, workflowTasks: 0, workflowTaskQueueMs: 0, workflowTaskRunMs: 0, activities: 0, activityQueueMs: 0, activityRunMs: 0, localActivities: 0 };
  const byId = new Map<number, number>();
  let wftScheduled = 0;
  let wftStarted = 0;
  for (const e of events) {
    const t = ms(e.eventTime);
    byId.set(Number(e.eventId), t);
    switch (e.eventType) {
      case E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
        wftScheduled = t;
        break;
      case E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
        wftStarted = t;
        out.workflowTaskQueueMs += t - wftScheduled;
        break;
      case E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
        out.workflowTasks++;
        out.workflowTaskRunMs += t - wftStarted;
        break;
      case E.EVENT_TYPE_ACTIVITY_TASK_STARTED: {
        const scheduled = byId.get(Number(e.activityTaskStartedEventAttributes?.scheduledEventId)) ?? t;
        out.activityQueueMs += t - scheduled;
        break;
      }
      case E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: {
        const started = byId.get(Number(e.activityTaskCompletedEventAttributes?.startedEventId)) ?? t;
        out.activities++;
        out.activityRunMs += t - started;
        break;
      }
      case E.EVENT_TYPE_MARKER_RECORDED:
        if (e.markerRecordedEventAttributes?.markerName === 'core_local_activity') out.localActivities++;
        break;
      case E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
        out.startToUpdateCompletedMs = t - start;
        return out;
    }
  }
  return undefined;
}
