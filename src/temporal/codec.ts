/**
 * AES-256-GCM payload codec: every payload the service puts into Temporal (inputs, results,
 * memos, signal and update arguments, failure messages) is encrypted before it leaves the
 * process. Search attributes are not payload data and stay readable: they hold no secrets.
 *
 * Keys come from PAYLOAD_ENCRYPTION_KEYS, `keyId:base64-of-32-bytes` separated by commas. The
 * first key encrypts; every listed key decrypts, so keys rotate by prepending a new one.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { DataConverter, Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

const ENCODING = 'binary/encrypted';
const KEY_ID = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface EncryptionKey {
  id: string;
  key: Buffer;
}

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);

export class AesGcmCodec implements PayloadCodec {
  private readonly byId: Map<string, Buffer>;
  constructor(private readonly keys: EncryptionKey[]) {
    if (keys.length === 0) throw new Error('at least one encryption key is required');
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const { id, key } = this.keys[0]!;
    return payloads.map((payload) => {
      const plain = temporal.api.common.v1.Payload.encode(payload).finish();
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return { metadata: { encoding: text(ENCODING), [KEY_ID]: text(id) }, data: sealed };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (str(payload.metadata?.encoding) !== ENCODING) return payload;
      const id = str(payload.metadata?.[KEY_ID]) ?? '';
      const key = this.byId.get(id);
      if (!key) throw new Error(`payload was encrypted with key "${id}", which is not in PAYLOAD_ENCRYPTION_KEYS`);
      const data = Buffer.from(payload.data ?? new Uint8Array());
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      return temporal.api.common.v1.Payload.decode(plain) as Payload;
    });
  }
}

/** Parses `keyId:base64,keyId:base64`; throws a message naming the bad entry. */
export function parseKeys(spec: string): EncryptionKey[] {
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry, i) => {
      const at = entry.indexOf(':');
      const id = at > 0 ? entry.slice(0, at) : '';
      const key = Buffer.from(at > 0 ? entry.slice(at + 1) : '', 'base64');
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(id) || key.length !== 32) {
        throw new Error(`PAYLOAD_ENCRYPTION_KEYS entry ${i + 1} must be keyId:base64-of-32-bytes`);
      }
      return { id, key };
    });
}

/** Where development keeps its generated key, so restarts can still read old payloads. */
export const DEV_KEY_FILE = path.resolve(__dirname, '..', '..', '.data', 'payload-encryption-key');

/**
 * The keys to use: PAYLOAD_ENCRYPTION_KEYS, or in development a key generated once into
 * .data/ (and said so). Production refuses to start without configured keys.
 */
export function loadKeys(options: { spec?: string; production: boolean; onGenerated?: (file: string) => void }): EncryptionKey[] {
  if (options.spec) return parseKeys(options.spec);
  if (options.production) throw new Error('PAYLOAD_ENCRYPTION_KEYS is required in production');
  if (!existsSync(DEV_KEY_FILE)) {
    mkdirSync(path.dirname(DEV_KEY_FILE), { recursive: true });
    // Written aside and linked into place: concurrent starters agree on one key.
    const tmp = `${DEV_KEY_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, `dev-${Date.now().toString(36)}:${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    try {
      linkSync(tmp, DEV_KEY_FILE);
      options.onGenerated?.(DEV_KEY_FILE);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(tmp);
    }
  }
  return parseKeys(readFileSync(DEV_KEY_FILE, 'utf8'));
}

/** The service's keys, saying in the log when development generated one. */
export function resolveKeys(config: { production: boolean; temporal: { encryptionKeys?: string } }, log: { warn(obj: object, msg: string): void }): EncryptionKey[] {
  return loadKeys({
    spec: config.temporal.encryptionKeys,
    production: config.production,
    onGenerated: (file) => log.warn({ file }, 'PAYLOAD_ENCRYPTION_KEYS is unset: generated a development key for Temporal payload encryption'),
  });
}

/** The data converter of every client and worker of the service. */
export function dataConverter(keys: EncryptionKey[]): DataConverter {
  return {
    payloadCodecs: [new AesGcmCodec(keys)],
    failureConverterPath: require.resolve('./failureConverter.js'),
  };
}
