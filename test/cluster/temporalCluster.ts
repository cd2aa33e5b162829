/**
 * A real Temporal server (v1.29.1, built by scripts/setup-temporal-server.sh) on PostgreSQL, as
 * an operator runs one: both schemas set up with its sql tool, PostgreSQL persistence and SQL
 * visibility, mTLS required on the frontend (and between its services), and the namespace created
 * with the Temporal CLI from Temporal's environment variables, as docs/production.md says.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import net from 'node:net';
import { connectClient, loadTemporalConnection, type TemporalConnectionConfig } from '../../src/temporal/connection';
import type { TestPki } from '../support/certs';

const run = promisify(execFile);
export const ROOT = path.resolve(__dirname, '../..');
export const SERVER_BIN = path.join(ROOT, '.tools/bin/server');
export const SQL_BIN = path.join(ROOT, '.tools/bin/sql');
export const CLI_BIN = process.env.TEMPORAL_CLI_PATH || path.join(ROOT, '.tools/bin/temporal');
export const SCHEMA_DIR = path.join(ROOT, '.tools/temporal-server-v1.29.1/schema/postgresql/v12');

/**
 * A free port below 32768. The server stores its services' membership ports in a `smallint`
 * column of its cluster_membership table: an ephemeral port (32768+, what port 0 gives on Linux)
 * stops the server with `value "33679" is out of range for type smallint`.
 */
async function freeLowPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

export interface PostgresAdmin {
  host: string;
  port: number;
  user: string;
  password: string;
}

/** Creates the `temporal` and `temporal_visibility` databases and their schemas with the sql tool. */
export async function setupSchemas(pg: PostgresAdmin): Promise<void> {
  for (const [db, dir] of [['temporal', 'temporal'], ['temporal_visibility', 'visibility']] as const) {
    const tool = (...args: string[]) =>
      run(SQL_BIN, ['--plugin', 'postgres12', '--ep', pg.host, '-p', String(pg.port), '-u', pg.user, '--pw', pg.password, '--db', db, ...args], { timeout: 120_000 });
    await tool('create-database');
    await tool('setup-schema', '-v', '0.0');
    await tool('update-schema', '-d', path.join(SCHEMA_DIR, dir, 'versioned'));
  }
}

export interface RunningCluster {
  address: string;
  /** TEMPORAL_* variables of a client with the client certificate. */
  clientEnv: Record<string, string>;
  connection: TemporalConnectionConfig;
  output: string[];
  stop(): Promise<void>;
}

/** Starts the server with mTLS on the frontend, waits for it, and creates the namespace. */
export async function startCluster({ dir, pg, pki, namespace = 'default', retention = '1d' }: { dir: string; pg: PostgresAdmin; pki: TestPki; namespace?: string; retention?: string }): Promise<RunningCluster> {
  const ports = { frontend: await freeLowPort(), frontendHttp: await freeLowPort(), history: await freeLowPort(), matching: await freeLowPort(), worker: await freeLowPort() };
  const membership = { frontend: await freeLowPort(), history: await freeLowPort(), matching: await freeLowPort(), worker: await freeLowPort() };
  const configDir = path.join(dir, 'config');
  mkdirSync(path.join(configDir, 'dynamicconfig'), { recursive: true });
  const datastore = (database: string, maxConns: number) => `
      sql:
        pluginName: "postgres12"
        databaseName: "${database}"
        connectAddr: "${pg.host}:${pg.port}"
        connectProtocol: "tcp"
        user: "${pg.user}"
        password: "${pg.password}"
        maxConns: ${maxConns}
        maxIdleConns: ${maxConns}
        maxConnLifetime: "1h"`;
  const service = (name: keyof typeof membership) => `
  ${name}:
    rpc:
      grpcPort: ${ports[name]}
      membershipPort: ${membership[name]}
      bindOnLocalHost: true${name === 'frontend' ? `\n      httpPort: ${ports.frontendHttp}` : ''}`;
  const tlsServer = `
        certFile: "${pki.serverCert}"
        keyFile: "${pki.serverKey}"
        requireClientAuth: true
        clientCaFiles: ["${pki.caCert}"]`;
  const tlsClient = `
        serverName: "localhost"
        rootCaFiles: ["${pki.caCert}"]`;
  writeFileSync(
    path.join(configDir, 'development.yaml'),
    `log:
  stdout: true
  level: warn

persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: 4
  datastores:
    postgres-default:${datastore('temporal', 20)}
    postgres-visibility:${datastore('temporal_visibility', 10)}

global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: "127.0.0.1"
  tls:
    # Between the server's own services; its internal clients of the frontend use this
    # certificate too, so the frontend's client-certificate requirement admits them.
    internode:
      server:${tlsServer}
      client:${tlsClient}
    frontend:
      server:${tlsServer}
      client:${tlsClient}

services:${service('frontend')}${service('matching')}${service('history')}${service('worker')}

clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: "active"
  currentClusterName: "active"
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: "frontend"
      rpcAddress: "localhost:${ports.frontend}"

dcRedirectionPolicy:
  policy: "noop"

dynamicConfigClient:
  filepath: "${path.join(ROOT, 'deploy/temporal/dynamicconfig.yaml')}"
  pollInterval: "10s"
`,
  );

  const output: string[] = [];
  const child: ChildProcess = spawn(SERVER_BIN, ['--root', dir, '--config', 'config', '--env', 'development', '--allow-no-auth', 'start'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 500) output.shift();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);

  const address = `127.0.0.1:${ports.frontend}`;
  const clientEnv = {
    TEMPORAL_ADDRESS: address,
    TEMPORAL_NAMESPACE: namespace,
    TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCert,
    TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKey,
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caCert,
    TEMPORAL_TLS_SERVER_NAME: 'localhost',
  };
  const loaded = loadTemporalConnection(clientEnv);
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  const connection = loaded.connection;

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
  };

  // The frontend answers once the server has joined its services (~10–30 s on two cores).
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the Temporal server exited (${child.exitCode}):\n${output.join('').slice(-3000)}`);
    try {
      const c = await connectClient(connection, { connectTimeoutMs: 2_000 });
      try {
        await c.workflowService.getSystemInfo({});
      } finally {
        await c.close();
      }
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`the Temporal server did not answer within 120 s: ${(err as Error).message}\n${output.join('').slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }

  // As an operator would (docs/production.md): the CLI, configured by the same variables.
  const cliEnv = { ...process.env, ...clientEnv, TEMPORAL_CONFIG_FILE: path.join(dir, 'no-config.toml') };
  for (let attempt = 0; ; attempt++) {
    try {
      await run(CLI_BIN, ['operator', 'namespace', 'create', '--namespace', namespace, '--retention', retention], { env: cliEnv, timeout: 30_000 });
      break;
    } catch (err) {
      const text = `${(err as { stderr?: string }).stderr ?? ''}${(err as Error).message}`;
      if (/already exists|AlreadyExists/i.test(text)) break;
      if (attempt >= 10) {
        await stop();
        throw new Error(`creating the namespace failed: ${text}`);
      }
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
  // The namespace reaches every service's cache within ~10 s; wait until it is usable.
  for (let attempt = 0; ; attempt++) {
    try {
      await run(CLI_BIN, ['workflow', 'list', '--namespace', namespace, '--limit', '1'], { env: cliEnv, timeout: 30_000 });
      break;
    } catch (err) {
      if (attempt >= 30) {
        await stop();
        throw new Error(`the namespace did not become usable: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
  return { address, clientEnv, connection, output, stop };
}
