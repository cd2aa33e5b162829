import type { Client } from '@temporalio/client';

/** A workflow's whole event history as text, with every payload's bytes decoded as UTF-8. */
export async function historyText(client: Client, workflowId: string): Promise<string> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return JSON.stringify(history, (key, value) => {
    if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
    // Proto JSON writes payload bytes as base64 strings.
    if (key === 'data' && typeof value === 'string') return Buffer.from(value, 'base64').toString('utf8');
    return value;
  });
}
