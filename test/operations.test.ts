import { execFile } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureSearchAttributes } from '../src/temporal/searchAttributes';
import { createDatabase } from './support/harness';
import { createDb, migrate } from '../src/db';
import { inject } from 'vitest';

const run = promisify(execFile);

describe('npm run tenants', () => {
  let url: string;
  beforeAll(async () => {
    url = await createDatabase();
  });
  const tenants = (...args: string[]) =>
    run('npx', ['tsx', 'src/cli/tenants.ts', ...args], { env: { ...process.env, DATABASE_URL: url, DEFAULT_TENANT: 'acme' } });

  it('lists the default tenant that the migrations create, adds, suspends and activates tenants', async () => {
    expect((await tenants('list')).stdout).toMatch(/^acme\tactive\tacme\t/m);
    expect((await tenants('add', 'globex', 'Globex', 'Corp')).stdout).toContain('added tenant globex (active)');
    expect((await tenants('suspend', 'globex')).stdout).toContain('tenant globex is suspended');
    expect((await tenants('list')).stdout).toMatch(/^globex\tsuspended\tGlobex Corp\t/m);
    expect((await tenants('activate', 'globex')).stdout).toContain('tenant globex is active');
    await expect(tenants('suspend', 'nobody')).rejects.toMatchObject({ code: 1 });
    await expect(tenants('frobnicate')).rejects.toMatchObject({ code: 2 });
  }, 60_000);

  it('migrations are idempotent: a second run changes nothing', async () => {
    const db = createDb({ url });
    try {
      await migrate(db, { defaultTenant: 'acme' });
      await migrate(db, { defaultTenant: 'acme' });
      expect(await db('tenants').where({ identifier: 'acme' })).toHaveLength(1);
    } finally {
      await db.destroy();
    }
  });
});

describe('the operator CLIs with ports moved (DEV_POSTGRES_PORT, DEV_TEMPORAL_PORT)', () => {
  /** Runs `cli` with `variable` set to a listener's port and nothing else set; true if it connected there. */
  async function connectsTo(variable: string, cli: string[]): Promise<boolean> {
    let connected = false;
    const server = createServer((socket) => {
      connected = true;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const env = { ...process.env, [variable]: String((server.address() as AddressInfo).port) };
    for (const name of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'TEMPORAL_CONFIG_FILE', 'TEMPORAL_PROFILE']) delete env[name];
    try {
      await run('npx', ['tsx', ...cli], { env, timeout: 30_000 }).catch(() => undefined);
    } finally {
      server.close();
    }
    return connected;
  }

  it('npm run tenants finds the embedded database of an npm start whose port was moved', async () => {
    expect(await connectsTo('DEV_POSTGRES_PORT', ['src/cli/tenants.ts', 'list'])).toBe(true);
  }, 60_000);

  it('npm run signups finds the Temporal dev server of an npm start whose port was moved', async () => {
    expect(await connectsTo('DEV_TEMPORAL_PORT', ['src/cli/signups.ts', 'stuck'])).toBe(true);
  }, 60_000);
});

describe('search attributes', () => {
  let connection: Connection;
  beforeAll(async () => {
    connection = await Connection.connect({ address: inject('temporalAddress') });
  });
  afterAll(async () => {
    await connection?.close();
  });

  it('SignupState is registered as a Keyword, and registering again is harmless', async () => {
    await ensureSearchAttributes({ address: inject('temporalAddress'), namespace: 'default' });
    const list = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
    // 2 = INDEXED_VALUE_TYPE_KEYWORD
    expect(list.customAttributes?.SignupState).toBe(2);
  });
});
