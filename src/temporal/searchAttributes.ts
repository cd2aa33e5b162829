/**
 * Registers the custom search attributes the service needs (SignupState) on a real cluster.
 * The dev server gets them from `--search-attribute` at start; a cluster gets them here: when a
 * worker starts, and when the API finds a signup start refused because the attribute is missing
 * (an API replica may start a signup before any worker has run). Already-registered attributes
 * are left alone. Registering needs operator rights (not granted to an API key on Temporal
 * Cloud, where an operator registers it in the namespace's settings).
 */
import type { ConnectionLike } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { connectClient, type TemporalConnectionConfig } from './connection';

export const REQUIRED_SEARCH_ATTRIBUTES = { SignupState: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD };

/** Adds the missing required attributes over `connection`; returns the names it added. */
export async function registerSearchAttributes(connection: Pick<ConnectionLike, 'operatorService'>, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = Object.entries(REQUIRED_SEARCH_ATTRIBUTES).filter(([name]) => !(name in (existing.customAttributes ?? {})));
  if (missing.length === 0) return [];
  try {
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing) });
  } catch (err) {
    // Another process added it in the meantime.
    if ((err as { code?: number }).code !== 6 /* ALREADY_EXISTS */) throw err;
  }
  return missing.map(([name]) => name);
}

/** The same over a connection of its own (a worker at start). */
export async function ensureSearchAttributes(c: TemporalConnectionConfig): Promise<string[]> {
  const connection = await connectClient(c);
  try {
    return await registerSearchAttributes(connection, c.namespace);
  } finally {
    await connection.close();
  }
}

/** Whether a start was refused because a search attribute it sets is not registered. */
export function isMissingSearchAttribute(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    // SQL visibility: "Namespace default has no mapping defined for search attribute SignupState";
    // Elasticsearch: "search attribute SignupState is not defined".
    if (/no mapping defined for search attribute|search attribute \S+ is not defined/i.test(e.message)) return true;
  }
  return false;
}

/** The command an operator runs to register them by hand. */
export function registerCommand(namespace: string): string {
  return `temporal operator search-attribute create --namespace ${namespace} --name SignupState --type Keyword`;
}
