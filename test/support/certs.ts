/**
 * A throwaway PKI made with openssl: a CA, a server certificate for `localhost`/127.0.0.1 and a
 * client certificate, all signed by the CA. For TLS and mTLS tests (connection, cluster).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A second client certificate from a different CA: a server requiring ours must refuse it. */
  strangerCert: string;
  strangerKey: string;
}

const openssl = (cwd: string, ...args: string[]) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });

function ca(dir: string, name: string) {
  openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.pem`);
}

function leaf(dir: string, caName: string, name: string, cn: string, ext: string) {
  openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
  execFileSync('sh', ['-c', `printf '%s\\n' "${ext}" > ${name}.ext`], { cwd: dir });
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
}

/** Writes the PKI into `dir` (created if needed) and returns the file paths. */
export function makeTestPki(dir: string): TestPki {
  mkdirSync(dir, { recursive: true });
  ca(dir, 'ca');
  leaf(dir, 'ca', 'server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth');
  leaf(dir, 'ca', 'client', 'accounts-client', 'extendedKeyUsage=clientAuth');
  ca(dir, 'stranger-ca');
  leaf(dir, 'stranger-ca', 'stranger', 'stranger', 'extendedKeyUsage=clientAuth');
  const p = (f: string) => path.join(dir, f);
  return {
    dir,
    caCert: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    strangerCert: p('stranger.pem'),
    strangerKey: p('stranger.key'),
  };
}

export const readPem = (file: string) => readFileSync(file, 'utf8');
