/**
 * Registers the custom search attributes the service needs (SignupState) on a real cluster.
 * The dev server gets them from `--search-attribute` at start; a cluster gets them here, when
 * a worker starts. Already-registered attributes are left alone.
 */
import { temporal } from '@temporalio/proto';
import { connectClient, type TemporalConnectionConfig } from './connection';

export const REQUIRED_SEARCH_ATTRIBUTES = { SignupState: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD };

export async function ensureSearchAttributes(c: TemporalConnectionConfig): Promise<void> {
  const namespace = c.namespace;
  const connection = await connectClient(c);
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace });
    const missing = Object.entries(REQUIRED_SEARCH_ATTRIBUTES).filter(([name]) => !(name in (existing.customAttributes ?? {})));
    if (missing.length === 0) return;
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing) });
  } finally {
    await connection.close();
  }
}
