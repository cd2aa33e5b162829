import type { Client } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';

/**
 * A workflow's whole event history as text, with every payload's bytes shown as UTF-8. Without a
 * codec that is what the Temporal server stores; with the service's codec, what it decodes to.
 */
export async function historyText(client: Client, workflowId: string, codec?: PayloadCodec): Promise<string> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const plain: unknown = JSON.parse(JSON.stringify(history));
  if (codec) await decodeAll(plain, codec);
  return JSON.stringify(plain, (key, value) => {
    // Proto JSON writes payload bytes as base64 strings.
    if ((key === 'data' || key === 'encoding' || key === 'encryption-key-id') && typeof value === 'string') {
      return Buffer.from(value, 'base64').toString('utf8');
    }
    return value;
  });
}

const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

/** Replaces, in place, every payload-shaped object (metadata + data) by its decoded form. */
async function decodeAll(node: unknown, codec: PayloadCodec): Promise<void> {
  if (!node || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (value && typeof value === 'object' && 'metadata' in value && typeof (value as { metadata: unknown }).metadata === 'object') {
      const raw = value as { metadata: Record<string, string>; data?: string };
      const payload: Payload = {
        metadata: Object.fromEntries(Object.entries(raw.metadata).map(([k, v]) => [k, b64(v)])),
        data: raw.data ? b64(raw.data) : undefined,
      };
      const [decoded] = await codec.decode([payload]);
      (node as Record<string, unknown>)[key] = {
        metadata: Object.fromEntries(Object.entries(decoded!.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v as Uint8Array).toString('base64')])),
        data: decoded!.data ? Buffer.from(decoded!.data).toString('base64') : undefined,
      };
    } else {
      await decodeAll(value, codec);
    }
  }
}
