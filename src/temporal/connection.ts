/**
 * Every Temporal connection of the service (the API's and the CLI tools' client, the worker's
 * native connection, the search-attribute check) is built here, from Temporal's standard
 * environment configuration, read by `@temporalio/envconfig` as Temporal's SDKs and CLI read it:
 *
 * - `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS`;
 * - `TEMPORAL_TLS_CLIENT_CERT_PATH`/`_DATA`, `TEMPORAL_TLS_CLIENT_KEY_PATH`/`_DATA`,
 *   `TEMPORAL_TLS_SERVER_CA_CERT_PATH`/`_DATA`, `TEMPORAL_TLS_SERVER_NAME`;
 * - `TEMPORAL_CONFIG_FILE` (a TOML file of profiles; default `~/.config/temporalio/temporal.toml`)
 *   and `TEMPORAL_PROFILE` (default `default`). Variables override the profile's values.
 *
 * What envconfig accepts silently (a missing config file, a key without its certificate,
 * `TEMPORAL_TLS=yes` read as false) is checked here, so a process stops at start-up with a line
 * naming the variable instead of failing its first call. Certificates are read once, at start:
 * the SDK cannot swap them on a live connection, so rotating them means restarting the processes.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Connection, type ConnectionOptions } from '@temporalio/client';
import { loadClientConfigProfile, toClientOptions, type ClientConfigProfile, type ConfigDataSource } from '@temporalio/envconfig';
import type { TLSConfig } from '@temporalio/common/lib/internal-non-workflow';
// Type only: the API and the CLIs never load the worker's native module.
import type { NativeConnection } from '@temporalio/worker';

/** The variables this module reads (listed in .env.example and the README). */
export const TEMPORAL_CONNECTION_VARS = [
  'TEMPORAL_API_KEY',
  'TEMPORAL_TLS',
  'TEMPORAL_TLS_CLIENT_CERT_PATH',
  'TEMPORAL_TLS_CLIENT_CERT_DATA',
  'TEMPORAL_TLS_CLIENT_KEY_PATH',
  'TEMPORAL_TLS_CLIENT_KEY_DATA',
  'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
  'TEMPORAL_TLS_SERVER_CA_CERT_DATA',
  'TEMPORAL_TLS_SERVER_NAME',
  'TEMPORAL_CONFIG_FILE',
  'TEMPORAL_PROFILE',
] as const;

/** How to reach the Temporal frontend. `apiKey` and the TLS key are secrets: never log this object. */
export interface TemporalConnectionConfig {
  /** `host:port`; undefined only where a dev server will be started (`npm start`, tests). */
  address: string | undefined;
  namespace: string;
  apiKey?: string;
  /** false/undefined: plaintext; true: TLS with the system's roots; an object: custom CA, mTLS, server name. */
  tls?: TLSConfig | boolean;
  /** Extra gRPC headers from the profile (`grpc_meta`) or `TEMPORAL_GRPC_META_*`. */
  metadata?: Record<string, string>;
}

/** The result of reading the environment: the connection, or one line per problem. */
export type LoadedTemporalConnection = { ok: true; connection: TemporalConnectionConfig } | { ok: false; problems: string[] };

/**
 * Reads and checks the Temporal connection settings from `env`. Reads the config file and the
 * certificate files it names (synchronously, at start-up). Never throws for a bad setting:
 * returns `problems`, each starting with the variable (or file key) at fault.
 */
export function loadTemporalConnection(env: Record<string, string | undefined>): LoadedTemporalConnection {
  // As in config.ts, an empty variable means unset (envconfig would take `TEMPORAL_API_KEY=` as a key).
  const vars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''));
  const problems: string[] = [];

  const tlsVar = vars.TEMPORAL_TLS;
  if (tlsVar !== undefined && !['true', 'false', '1', '0'].includes(tlsVar)) {
    problems.push(`TEMPORAL_TLS: expected true, false, 1 or 0, got "${tlsVar}"`);
  }
  const file = vars.TEMPORAL_CONFIG_FILE;
  if (file !== undefined && !existsSync(file)) problems.push(`TEMPORAL_CONFIG_FILE: no such file: ${file}`);
  if (vars.TEMPORAL_PROFILE !== undefined && file === undefined && !existsSync(defaultConfigFile(vars) ?? '')) {
    problems.push(`TEMPORAL_PROFILE: set to "${vars.TEMPORAL_PROFILE}", but there is no config file (set TEMPORAL_CONFIG_FILE)`);
  }
  if (problems.length) return { ok: false, problems };

  let profile: ClientConfigProfile;
  try {
    profile = loadClientConfigProfile({ overrideEnvVars: vars, configFileStrict: true });
  } catch (err) {
    const where = file ? `TEMPORAL_CONFIG_FILE (${file})` : (defaultConfigFile(vars) ?? 'the Temporal config file');
    // The first line only: a TOML parser's later lines quote the file, which may hold an API key.
    return { ok: false, problems: [`${where}: ${(err as Error).message.split('\n')[0]}`] };
  }

  // The names an operator would look for, for messages: the variable if set (for a certificate,
  // its _PATH or _DATA one), else the key in the config file.
  const name = (envName: string, fileKey: string) => {
    const data = envName.replace(/_PATH$/, '_DATA');
    if (vars[envName] !== undefined) return envName;
    if (vars[data] !== undefined) return data;
    return `${fileKey} in the config profile`;
  };
  const tls = profile.tls;
  if (tls) {
    const sources: Array<[ConfigDataSource | undefined, string, string]> = [
      [tls.clientCert, 'TEMPORAL_TLS_CLIENT_CERT', 'client_cert'],
      [tls.clientKey, 'TEMPORAL_TLS_CLIENT_KEY', 'client_key'],
      [tls.serverCACert, 'TEMPORAL_TLS_SERVER_CA_CERT', 'server_ca_cert'],
    ];
    for (const [source, envName, key] of sources) {
      if (source && 'path' in source && !existsSync(source.path)) {
        problems.push(`${vars[`${envName}_PATH`] !== undefined ? `${envName}_PATH` : `${key}_path in the config profile`}: no such file: ${source.path}`);
      }
    }
    if (tls.clientCert && !tls.clientKey) problems.push('TEMPORAL_TLS_CLIENT_KEY_PATH or _DATA: a client certificate is set without its private key');
    if (tls.clientKey && !tls.clientCert) problems.push('TEMPORAL_TLS_CLIENT_CERT_PATH or _DATA: a client private key is set without its certificate');
    if (tls.disabled && (tls.clientCert || tls.clientKey || tls.serverCACert || tls.serverName)) {
      problems.push(`${name('TEMPORAL_TLS', 'tls.disabled')}: TLS is turned off, but TLS settings are given (certificates or server name)`);
    }
  }
  if (problems.length) return { ok: false, problems };

  let options: ReturnType<typeof toClientOptions>;
  try {
    options = toClientOptions(profile); // reads the certificate files
  } catch (err) {
    return { ok: false, problems: [`a TLS file could not be read: ${(err as Error).message.split('\n')[0]}`] };
  }
  const tlsOption = options.connectionOptions.tls ?? undefined;
  if (tlsOption && typeof tlsOption === 'object') problems.push(...checkCertificates(tlsOption, name));

  const address = profile.address;
  if (address !== undefined && !/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/.test(address)) {
    problems.push(`${name('TEMPORAL_ADDRESS', 'address')}: expected host:port, got "${address}"`);
  }
  if (problems.length) return { ok: false, problems };

  return {
    ok: true,
    connection: {
      address,
      namespace: profile.namespace ?? 'default',
      ...(profile.apiKey !== undefined ? { apiKey: profile.apiKey } : {}),
      ...(tlsOption !== undefined ? { tls: tlsOption } : {}),
      ...(profile.grpcMeta ? { metadata: profile.grpcMeta } : {}),
    },
  };
}

/** PEM parsing, key/certificate match and expiry: what a server would otherwise reject with a vaguer error. */
function checkCertificates(tls: TLSConfig, name: (envName: string, fileKey: string) => string): string[] {
  const problems: string[] = [];
  const certName = name('TEMPORAL_TLS_CLIENT_CERT_PATH', 'client_cert');
  if (tls.serverRootCACertificate) {
    try {
      new X509Certificate(Buffer.from(tls.serverRootCACertificate));
    } catch {
      problems.push(`${name('TEMPORAL_TLS_SERVER_CA_CERT_PATH', 'server_ca_cert')}: not a PEM certificate`);
    }
  }
  if (tls.clientCertPair) {
    let cert: X509Certificate | undefined;
    let key: KeyObject | undefined;
    try {
      cert = new X509Certificate(Buffer.from(tls.clientCertPair.crt));
    } catch {
      problems.push(`${certName}: not a PEM certificate`);
    }
    try {
      key = createPrivateKey(Buffer.from(tls.clientCertPair.key));
    } catch {
      problems.push(`${name('TEMPORAL_TLS_CLIENT_KEY_PATH', 'client_key')}: not a PEM private key (an encrypted key is not supported)`);
    }
    if (cert && key && !cert.checkPrivateKey(key)) {
      problems.push('TEMPORAL_TLS_CLIENT_KEY_PATH/_DATA: the private key does not belong to the client certificate');
    }
    if (cert && Date.parse(cert.validTo) < Date.now()) {
      problems.push(`${certName}: the client certificate expired on ${new Date(cert.validTo).toISOString()}`);
    }
  }
  return problems;
}

function defaultConfigFile(vars: Record<string, string>): string | undefined {
  const base = vars.XDG_CONFIG_HOME ?? (vars.HOME ? `${vars.HOME}/.config` : undefined);
  return base ? `${base}/temporalio/temporal.toml` : undefined;
}

/** One line for logs: where and how, without secrets. */
export function describeConnection(c: TemporalConnectionConfig): string {
  const tls = !c.tls ? 'plaintext' : typeof c.tls === 'object' && c.tls.clientCertPair ? 'mTLS' : 'TLS';
  return `${c.address ?? '(no address)'} namespace ${c.namespace}, ${tls}${c.apiKey !== undefined ? ', API key' : ''}`;
}

function requireAddress(c: TemporalConnectionConfig): string {
  if (!c.address) throw new Error('TEMPORAL_ADDRESS (or address in a TEMPORAL_CONFIG_FILE profile) is required');
  return c.address;
}

/** Options for the client's (grpc-js) Connection. */
export function clientConnectionOptions(c: TemporalConnectionConfig, connectTimeoutMs?: number): ConnectionOptions {
  return {
    address: requireAddress(c),
    ...(c.tls !== undefined ? { tls: c.tls } : {}),
    ...(c.apiKey !== undefined ? { apiKey: c.apiKey } : {}),
    ...(c.metadata ? { metadata: c.metadata } : {}),
    ...(connectTimeoutMs !== undefined ? { connectTimeout: connectTimeoutMs } : {}),
  };
}

/**
 * A client connection. `lazy` (the API's): connects on first use, so the API starts and answers
 * 503 while Temporal is down. Otherwise it connects now and rejects if it cannot.
 */
export async function connectClient(c: TemporalConnectionConfig, { lazy = false, connectTimeoutMs = 3_000 } = {}): Promise<Connection> {
  const options = clientConnectionOptions(c, connectTimeoutMs);
  return lazy ? Connection.lazy(options) : Connection.connect(options);
}

/** The same, lazily and synchronously (the API builds its client before it listens). */
export function lazyClientConnection(c: TemporalConnectionConfig, connectTimeoutMs = 3_000): Connection {
  return Connection.lazy(clientConnectionOptions(c, connectTimeoutMs));
}

/** The worker's native (Rust core) connection; rejects if the frontend cannot be reached or refuses the handshake. */
export async function connectWorker(c: TemporalConnectionConfig): Promise<NativeConnection> {
  const { NativeConnection } = await import('@temporalio/worker');
  try {
    return await NativeConnection.connect({
      address: requireAddress(c),
      ...(c.tls !== undefined ? { tls: c.tls } : {}),
      ...(c.apiKey !== undefined ? { apiKey: c.apiKey } : {}),
      ...(c.metadata ? { metadata: c.metadata } : {}),
    });
  } catch (err) {
    throw new TemporalConnectError(c, err);
  }
}

/**
 * Connects once and closes, to tell an operator at start-up whether Temporal can be reached with
 * these settings. Resolves with the error (a TemporalConnectError), or undefined when it worked.
 */
export async function probeConnection(c: TemporalConnectionConfig, connectTimeoutMs = 5_000): Promise<TemporalConnectError | undefined> {
  try {
    const connection = await connectClient(c, { connectTimeoutMs });
    await connection.close();
    return undefined;
  } catch (err) {
    return new TemporalConnectError(c, err);
  }
}

/** The frontend could not be reached or refused us: says where, how, and what to check. */
export class TemporalConnectError extends Error {
  override name = 'TemporalConnectError';
  constructor(c: TemporalConnectionConfig, cause: unknown) {
    const message = (cause as Error)?.message ?? String(cause);
    const withCert = Boolean(c.tls && typeof c.tls === 'object' && c.tls.clientCertPair);
    // A frontend that requires a client certificate refuses during the TLS handshake; with TLS
    // 1.3 the client may only see the connection closed afterwards.
    const tlsRefusal = /certificate|handshake|tls|ssl|alert|unknown ca/i.test(message) || (Boolean(c.tls) && !withCert && /connection closed|transport error/i.test(message));
    const hint = tlsRefusal
      ? withCert
        ? ' Check that the frontend trusts the CA of TEMPORAL_TLS_CLIENT_CERT_PATH, and TEMPORAL_TLS_SERVER_CA_CERT_PATH/TEMPORAL_TLS_SERVER_NAME for its certificate.'
        : ' The frontend may require a client certificate (mTLS): set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH (or _DATA).'
      : /unauthenticated|permission|unauthorized/i.test(message)
        ? ' The frontend refused our credentials: check TEMPORAL_API_KEY or the client certificate.'
        : /Failed to connect before the deadline/i.test(message) && c.tls
          ? // grpc-js reports a refused TLS handshake and an unreachable server alike.
            ` Either nothing answers there, or the frontend refused the TLS handshake${withCert ? ' (check the certificates)' : ' (if it requires a client certificate, set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH)'}.`
          : '';
    super(`cannot connect to Temporal at ${c.address} (${describeConnection(c).replace(/^\S+ /, '')}): ${message}.${hint}`, { cause });
  }
}
