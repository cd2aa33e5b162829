/**
 * How every process reaches Temporal (src/temporal/connection.ts): Temporal's environment
 * configuration read with @temporalio/envconfig, checked at start-up, and the API key and TLS
 * settings reaching the wire. A fake frontend over TLS records what the client and the worker's
 * native connection send, so the API-key path is tested as far as it can be without Temporal Cloud.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config';
import { connectClient, connectWorker, loadTemporalConnection, type TemporalConnectionConfig } from '../src/temporal/connection';
import { makeTestPki, readPem, type TestPki } from './support/certs';

let dir: string;
let pki: TestPki;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'temporal-connection-'));
  pki = makeTestPki(path.join(dir, 'pki'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The environment of a service process, plus `extra`. HOME points nowhere, so no user config file is read. */
const env = (extra: Record<string, string>) => ({ TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT: 's', HOME: '/nonexistent', ...extra });

function problems(extra: Record<string, string>): string {
  try {
    loadConfig(env(extra));
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('loadConfig accepted the configuration');
}

function connection(extra: Record<string, string>): TemporalConnectionConfig {
  const loaded = loadTemporalConnection(env(extra));
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  return loaded.connection;
}

describe('reading the connection from the environment', () => {
  it('takes address and namespace, with plaintext and no key by default', () => {
    const c = connection({ TEMPORAL_ADDRESS: 'temporal.internal:7233', TEMPORAL_NAMESPACE: 'accounts' });
    expect(c).toEqual({ address: 'temporal.internal:7233', namespace: 'accounts' });
    expect(loadConfig(env({})).temporal.namespace).toBe('default');
  });

  it('turns TLS on by default when an API key is given (Temporal Cloud), and passes the key', () => {
    const c = connection({ TEMPORAL_ADDRESS: 'my-ns.a1b2c.tmprl.cloud:7233', TEMPORAL_API_KEY: 'cloud-key' });
    expect(c.apiKey).toBe('cloud-key');
    expect(c.tls).toBe(true);
    // TEMPORAL_TLS=false still wins, for a local proxy that terminates TLS.
    expect(connection({ TEMPORAL_ADDRESS: 'proxy:7233', TEMPORAL_API_KEY: 'k', TEMPORAL_TLS: 'false' }).tls).toBe(false);
  });

  it('reads mTLS from files or inline data, with the server name', () => {
    const fromFiles = connection({
      TEMPORAL_ADDRESS: '127.0.0.1:7233',
      TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCert,
      TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKey,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caCert,
      TEMPORAL_TLS_SERVER_NAME: 'localhost',
    });
    const fromData = connection({
      TEMPORAL_ADDRESS: '127.0.0.1:7233',
      TEMPORAL_TLS_CLIENT_CERT_DATA: readPem(pki.clientCert),
      TEMPORAL_TLS_CLIENT_KEY_DATA: readPem(pki.clientKey),
      TEMPORAL_TLS_SERVER_CA_CERT_DATA: readPem(pki.caCert),
      TEMPORAL_TLS_SERVER_NAME: 'localhost',
    });
    for (const c of [fromFiles, fromData]) {
      expect(c.tls).toMatchObject({ serverNameOverride: 'localhost' });
      const tls = c.tls as Exclude<typeof c.tls, boolean | undefined>;
      expect(Buffer.from(tls.clientCertPair!.crt).toString()).toBe(readPem(pki.clientCert));
      expect(Buffer.from(tls.clientCertPair!.key).toString()).toBe(readPem(pki.clientKey));
      expect(Buffer.from(tls.serverRootCACertificate!).toString()).toBe(readPem(pki.caCert));
    }
  });

  it('reads a profile of TEMPORAL_CONFIG_FILE, and variables override it', () => {
    const file = path.join(dir, 'temporal.toml');
    writeFileSync(
      file,
      [
        '[profile.default]',
        'address = "default.example:7233"',
        '[profile.prod]',
        'address = "prod.example:7233"',
        'namespace = "accounts-prod"',
        '[profile.prod.tls]',
        `client_cert_path = "${pki.clientCert}"`,
        `client_key_path = "${pki.clientKey}"`,
        '',
      ].join('\n'),
    );
    expect(connection({ TEMPORAL_CONFIG_FILE: file }).address).toBe('default.example:7233');
    const prod = connection({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod' });
    expect(prod).toMatchObject({ address: 'prod.example:7233', namespace: 'accounts-prod' });
    expect((prod.tls as { clientCertPair?: unknown }).clientCertPair).toBeDefined();
    expect(connection({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod', TEMPORAL_NAMESPACE: 'other' }).namespace).toBe('other');
    expect(problems({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'staging' })).toMatch(/TEMPORAL_CONFIG_FILE.*Profile 'staging' not found/);
  });
});

describe('start-up refuses a connection that cannot work, naming the setting', () => {
  it.each([
    ['a config file that does not exist', { TEMPORAL_CONFIG_FILE: '/nonexistent/temporal.toml' }, /TEMPORAL_CONFIG_FILE: no such file: \/nonexistent\/temporal.toml/],
    ['a certificate file that does not exist', { TEMPORAL_TLS_CLIENT_CERT_PATH: '/nonexistent/client.pem', TEMPORAL_TLS_CLIENT_KEY_PATH: '/nonexistent/client.key' }, /TEMPORAL_TLS_CLIENT_CERT_PATH: no such file: \/nonexistent\/client.pem/],
    ['a key without its certificate', () => ({ TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKey }), /client private key is set without its certificate/],
    ['a certificate without its key', () => ({ TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCert }), /client certificate is set without its private key/],
    ['a key that belongs to another certificate', () => ({ TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCert, TEMPORAL_TLS_CLIENT_KEY_PATH: pki.strangerKey }), /private key does not belong to the client certificate/],
    ['a certificate that is not PEM', () => ({ TEMPORAL_TLS_CLIENT_CERT_DATA: 'not a certificate', TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKey }), /TEMPORAL_TLS_CLIENT_CERT.*not a PEM certificate/],
    ['both a path and inline data', () => ({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caCert, TEMPORAL_TLS_SERVER_CA_CERT_DATA: readPem(pki.caCert) }), /server_ca_cert/],
    ['TEMPORAL_TLS that is not a boolean', { TEMPORAL_TLS: 'yes' }, /TEMPORAL_TLS: expected true, false, 1 or 0, got "yes"/],
    ['TLS off with certificates given', () => ({ TEMPORAL_TLS: 'false', TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caCert }), /TEMPORAL_TLS: TLS is turned off, but TLS settings are given/],
    ['an address without a port', { TEMPORAL_ADDRESS: 'temporal.internal' }, /TEMPORAL_ADDRESS: expected host:port, got "temporal.internal"/],
  ] as Array<[string, Record<string, string> | (() => Record<string, string>), RegExp]>)('%s', (_what, extra, message) => {
    expect(problems(typeof extra === 'function' ? extra() : extra)).toMatch(message);
  });

  it('never quotes a config file that does not parse (it may hold an API key)', () => {
    const file = path.join(dir, 'broken.toml');
    writeFileSync(file, '[profile.default]\napi_key = "secret-in-file\naddress = 1:2\n');
    const message = problems({ TEMPORAL_CONFIG_FILE: file });
    expect(message).toMatch(/TEMPORAL_CONFIG_FILE \(.*broken.toml\): /);
    expect(message).not.toContain('secret-in-file');
  });

  it('never puts the API key or a private key into the message', () => {
    const message = problems({ TEMPORAL_API_KEY: 'secret-api-key', TEMPORAL_TLS_CLIENT_KEY_DATA: readPem(pki.clientKey), TEMPORAL_ADDRESS: 'x' });
    expect(message).toMatch(/without its certificate/);
    expect(message).not.toContain('secret-api-key');
    expect(message).not.toContain('PRIVATE KEY');
  });
});

/**
 * A TLS gRPC "frontend" that records each request's headers and answers UNAUTHENTICATED, as a
 * server refusing the key would.
 */
async function fakeTlsFrontend() {
  const requests: http2.IncomingHttpHeaders[] = [];
  const server = http2.createSecureServer({ key: readPem(pki.serverKey), cert: readPem(pki.serverCert), allowHTTP1: false });
  server.on('stream', (stream, headers) => {
    requests.push(headers);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '16', 'grpc-message': 'fake frontend' }, { endStream: true });
  });
  // The client keeps its HTTP/2 session open after a failed call; close() must not wait for it.
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => (sessions.add(session), session.on('close', () => sessions.delete(session))));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const close = () => new Promise((r) => (server.close(r), sessions.forEach((s) => s.destroy())));
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests, close };
}

describe('the API key on the wire', () => {
  it.each(['client (API, CLI tools)', 'worker (native connection)'])('the %s sends it as a bearer token over TLS', async (which) => {
    const frontend = await fakeTlsFrontend();
    try {
      const c = connection({
        TEMPORAL_ADDRESS: frontend.address,
        TEMPORAL_API_KEY: 'my-cloud-api-key',
        // Our fake's CA instead of the system's roots, which a Cloud endpoint would use.
        TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caCert,
        TEMPORAL_TLS_SERVER_NAME: 'localhost',
      });
      const connect = which.startsWith('client') ? () => connectClient(c) : () => connectWorker(c);
      await expect(connect()).rejects.toThrow();
      expect(frontend.requests.length).toBeGreaterThan(0);
      expect(frontend.requests[0]!.authorization).toBe('Bearer my-cloud-api-key');
    } finally {
      await frontend.close();
    }
  });

  it('with only an API key, the connection starts with a TLS handshake, never plaintext', async () => {
    const firstBytes: Buffer[] = [];
    const server = net.createServer((socket) => socket.once('data', (chunk) => (firstBytes.push(chunk), socket.destroy())));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const c = connection({ TEMPORAL_ADDRESS: `127.0.0.1:${(server.address() as AddressInfo).port}`, TEMPORAL_API_KEY: 'my-cloud-api-key' });
      await expect(connectClient(c, { connectTimeoutMs: 2_000 })).rejects.toThrow();
      expect(firstBytes.length).toBeGreaterThan(0);
      // A TLS record of type handshake (0x16), version 3.x: a ClientHello. Plaintext HTTP/2 starts with "PRI *".
      expect(firstBytes[0]![0]).toBe(0x16);
      expect(firstBytes[0]![1]).toBe(0x03);
      expect(Buffer.concat(firstBytes).toString('latin1')).not.toContain('my-cloud-api-key');
    } finally {
      server.close();
    }
  });
});
