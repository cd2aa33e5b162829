/**
 * An existing Temporal server without the `SignupState` search attribute (issue 14, section 5):
 * an API that starts a signup before any worker has registered it registers it itself and
 * answers 202; where it cannot register it (no operator rights, as with a Temporal Cloud API
 * key), the signup is answered 503 with `Retry-After` and a log line naming the attribute and the
 * command that registers it. Never a 500.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/api/app';
import { startTemporalDevServer, type RunningDevServer } from '../src/dev/temporalServer';
import { AesGcmCodec, dataConverter, resolveKeys } from '../src/temporal/codec';
import { connectClient } from '../src/temporal/connection';
import { TmcClient } from '../src/tmc';
import { eventually, startHarness, type Harness } from './support/harness';

let temporal: RunningDevServer;
let h: Harness;

beforeAll(async () => {
  // A server like an existing cluster: no custom search attributes.
  temporal = await startTemporalDevServer({ searchAttributes: [] });
  h = await startHarness({ temporalAddress: temporal.address, worker: false });
}, 120_000);
afterAll(async () => {
  await h?.close();
  await temporal?.stop();
});

const signupBody = (email: string) => ({ tenant: 'default', email, display_name: 'Grace', password: 'correct horse battery' });

async function customAttributes(): Promise<string[]> {
  const { customAttributes } = await h.client.connection.operatorService.listSearchAttributes({ namespace: 'default' });
  return Object.keys(customAttributes ?? {});
}

describe('a signup on a server without SignupState', () => {
  it('answers 503 with Retry-After and logs what is missing when this process may not register it', async () => {
    expect(await customAttributes()).not.toContain('SignupState');
    // An API whose Temporal identity lacks operator rights.
    const connection = await connectClient(h.config.temporal.connection);
    connection.operatorService.addSearchAttributes = (async () => {
      throw Object.assign(new Error('7 PERMISSION_DENIED: Request unauthorized.'), { code: 7 });
    }) as unknown as typeof connection.operatorService.addSearchAttributes;
    const keys = resolveKeys(h.config, h.log);
    const client = new Client({ connection, namespace: 'default', dataConverter: dataConverter(keys) });
    const app = createApp({ config: h.config, db: h.db, temporal: client, tmc: new TmcClient(h.config.tmc), log: h.log, codec: new AesGcmCodec(keys) });
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v0/signups`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(signupBody('refused@example.org')),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(await res.json()).toMatchObject({ title: 'Service Unavailable', source: null });
      const logged = h.logLines.join('');
      expect(logged).toContain('search attribute SignupState is not registered in namespace default');
      expect(logged).toContain('temporal operator search-attribute create --namespace default --name SignupState --type Keyword');
      expect(logged).not.toContain('correct horse battery');
    } finally {
      server.close();
      await connection.close();
    }
  }, 60_000);

  it('registers it and answers 202, and the waiting signup is found by SignupState', async () => {
    expect(await customAttributes()).not.toContain('SignupState');
    const res = await h.request('POST', '/api/v0/signups', { body: signupBody('first@example.org') });
    expect(res.status, res.text).toBe(202);
    expect(await customAttributes()).toContain('SignupState');
    const found = await eventually(async () => {
      const { count } = await h.client.workflow.count('SignupState="AwaitingVerification"');
      return count > 0 ? count : undefined;
    }, { what: 'the signup in visibility' });
    expect(found).toBe(1);
  }, 60_000);
});
