/**
 * Every password headless-lms accepts, this service accepts (issue 13 §2), checked with hashes
 * made by headless-lms's own crate and settings (test/fixtures/headlessLmsHashes.ts).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import { replacePasswordHashIf } from '../src/db/users';
import { hasCurrentParameters, hashPassword, passwordTooLong, verifyPasswordCompat } from '../src/passwords';
import { HEADLESS_LMS_HASHES as H, SERVICE_MADE_HASH } from './fixtures/headlessLmsHashes';
import { startHarness, type Harness } from './support/harness';

const BEFORE = { rawFallbackUntil: new Date('2027-06-12T00:00:00Z'), now: new Date('2027-06-11T23:59:59Z') };
const AFTER = { rawFallbackUntil: new Date('2027-06-12T00:00:00Z'), now: new Date('2027-06-12T00:00:00Z') };

describe('verifyPasswordCompat on hashes made by headless-lms (argon2 0.6.0 crate)', () => {
  it('matches an NFC-hashed row in either form, and asks for no re-hash', async () => {
    expect(await verifyPasswordCompat(H.nfc.hash, H.nfc.password, BEFORE)).toEqual({ ok: true, rehash: null });
    expect(await verifyPasswordCompat(H.nfc.hash, H.nfc.password.normalize('NFD'), AFTER)).toEqual({ ok: true, rehash: null });
    expect(await verifyPasswordCompat(H.nfc.hash, 'P\u00e4ssw\u00f6rd nfc 2', BEFORE)).toEqual({ ok: false });
  });

  it('matches a row hashed before normalization by its raw bytes until the cut-off, asking to re-store it normalized', async () => {
    expect(await verifyPasswordCompat(H.raw.hash, H.raw.password, BEFORE)).toEqual({ ok: true, rehash: 'normalized' });
    expect(await verifyPasswordCompat(H.raw.hash, H.raw.password, AFTER)).toEqual({ ok: false });
    // The composed form is other bytes: headless-lms refuses it too.
    expect(await verifyPasswordCompat(H.raw.hash, H.raw.password.normalize('NFC'), BEFORE)).toEqual({ ok: false });
  });

  it("matches a row with argon2's default parameters and asks for a re-hash", async () => {
    expect(hasCurrentParameters(H.legacy.hash)).toBe(false);
    expect(await verifyPasswordCompat(H.legacy.hash, H.legacy.password, AFTER)).toEqual({ ok: true, rehash: 'parameters' });
    expect(await verifyPasswordCompat(H.legacy.hash, 'legacy defaults 4', BEFORE)).toEqual({ ok: false });
    expect(await verifyPasswordCompat(H.legacyRaw.hash, H.legacyRaw.password, BEFORE)).toEqual({ ok: true, rehash: 'normalized' });
  });

  it('matches a password longer than the signup cap', async () => {
    expect(Buffer.byteLength(H.long.password)).toBeGreaterThan(1024);
    expect(await verifyPasswordCompat(H.long.hash, H.long.password, AFTER)).toEqual({ ok: true, rehash: null });
  });

  it("writes hashes headless-lms verifies, with headless-lms's parameter order", async () => {
    // SERVICE_MADE_HASH came from hashPassword and was checked with the Rust verifier.
    expect(await verifyPasswordCompat(SERVICE_MADE_HASH.hash, SERVICE_MADE_HASH.password, AFTER)).toEqual({ ok: true, rehash: null });
    const fresh = await hashPassword('x');
    expect(fresh).toMatch(/^\$argon2id\$v=19\$m=65536,t=3,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(hasCurrentParameters(fresh)).toBe(true);
  });

  it('answers false, never throws, for a hash it cannot parse', async () => {
    expect(await verifyPasswordCompat('$2b$10$notargon', 'x', BEFORE)).toEqual({ ok: false });
  });
});

describe('password length caps', () => {
  it('measures the signup cap after NFC: 1 023 bytes that normalize to 2 046 are too long', () => {
    const expanding = '\u0958'.repeat(341);
    expect(Buffer.byteLength(expanding)).toBe(1023);
    expect(passwordTooLong(expanding)).toBe(true);
    expect(passwordTooLong('a'.repeat(1024))).toBe(false);
  });

  it("takes the raw-bytes cut-off from PASSWORD_RAW_FALLBACK_UNTIL, headless-lms's by default", () => {
    const base = { TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT: 's' };
    expect(loadConfig(base).passwords.rawFallbackUntil.toISOString()).toBe('2027-06-12T00:00:00.000Z');
    expect(loadConfig({ ...base, PASSWORD_RAW_FALLBACK_UNTIL: '2026-01-01T00:00:00+02:00' }).passwords.rawFallbackUntil.toISOString()).toBe('2025-12-31T22:00:00.000Z');
    expect(() => loadConfig({ ...base, PASSWORD_RAW_FALLBACK_UNTIL: 'next summer' })).toThrow(/PASSWORD_RAW_FALLBACK_UNTIL/);
  });
});

describe('the TMC endpoints with rows as headless-lms left them', () => {
  let h: Harness;
  let nextUpstream = 7000;
  beforeAll(async () => {
    h = await startHarness({ worker: false });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function userWithHash(hash: string): Promise<string> {
    const id = randomUUID();
    await h.db('users').insert({ id, upstream_id: nextUpstream++, email_domain: 'example.org' });
    await h.db('user_passwords').insert({ user_id: id, password_hash: hash });
    return id;
  }
  const storedHash = async (id: string) => (await h.db('user_passwords').where({ user_id: id }).first()).password_hash as string;
  const authenticate = async (user_id: string, password: string) => (await h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id, password })).text;
  async function rehashes(reason: string): Promise<number> {
    const text = (await h.request('GET', '/metrics')).text;
    const line = text.split('\n').find((l) => l.startsWith(`accounts_password_rehashes_total{reason="${reason}"}`));
    return line ? Number(line.split(' ')[1]) : 0;
  }

  it('authenticates an NFC-hashed row and leaves its hash alone', async () => {
    const id = await userWithHash(H.nfc.hash);
    expect(await authenticate(id, H.nfc.password)).toBe('true');
    expect(await storedHash(id)).toBe(H.nfc.hash);
  });

  it('authenticates a raw-hashed row and re-stores it normalized, counted on /metrics', async () => {
    const id = await userWithHash(H.raw.hash);
    const before = await rehashes('normalized');
    expect(await authenticate(id, H.raw.password)).toBe('true');
    const after = await storedHash(id);
    expect(after).not.toBe(H.raw.hash);
    expect(hasCurrentParameters(after)).toBe(true);
    expect(await rehashes('normalized')).toBe(before + 1);
    // Now the composed form works too, and nothing is re-stored again.
    expect(await authenticate(id, H.raw.password.normalize('NFC'))).toBe('true');
    expect(await authenticate(id, H.raw.password)).toBe('true');
    expect(await storedHash(id)).toBe(after);
    expect(await rehashes('normalized')).toBe(before + 1);
  });

  it('authenticates a legacy-parameter row and re-hashes it with the current parameters', async () => {
    const id = await userWithHash(H.legacy.hash);
    const before = await rehashes('parameters');
    expect(await authenticate(id, 'legacy defaults 4')).toBe('false');
    expect(await storedHash(id)).toBe(H.legacy.hash);
    expect(await authenticate(id, H.legacy.password)).toBe('true');
    const after = await storedHash(id);
    expect(after).toMatch(/^\$argon2id\$v=19\$m=65536,t=3,p=4\$/);
    expect(await rehashes('parameters')).toBe(before + 1);
    expect(await authenticate(id, H.legacy.password)).toBe('true');
    expect(await storedHash(id)).toBe(after);
  });

  it('upgrades a legacy raw-hashed row in one step', async () => {
    const id = await userWithHash(H.legacyRaw.hash);
    expect(await authenticate(id, H.legacyRaw.password)).toBe('true');
    expect(await storedHash(id)).toMatch(/^\$argon2id\$v=19\$m=65536,t=3,p=4\$/);
    expect(await authenticate(id, H.legacyRaw.password.normalize('NFC'))).toBe('true');
  });

  it('accepts a password over 1024 bytes for authenticate and change-password, and lets TMC set one', async () => {
    const id = await userWithHash(H.long.hash);
    expect(await authenticate(id, H.long.password)).toBe('true');
    const longer = 'ö'.repeat(3000);
    const change = await h.tmcRequest('POST', '/api/v0/tmc-server/users/change-password', { user_id: id, old_password: H.long.password, new_password: longer });
    expect(change.text).toBe('true');
    expect(await authenticate(id, longer)).toBe('true');
    expect(await authenticate(id, H.long.password)).toBe('false');
  });

  it('accepts a raw-hashed old_password in change-password', async () => {
    const id = await userWithHash(H.raw.hash);
    const change = await h.tmcRequest('POST', '/api/v0/tmc-server/users/change-password', { user_id: id, old_password: H.raw.password, new_password: 'brand new' });
    expect(change.text).toBe('true');
    expect(await authenticate(id, 'brand new')).toBe('true');
  });

  it('re-stores only if the hash is still the one verified (compare-and-swap)', async () => {
    const id = await userWithHash(H.legacy.hash);
    const changedMeanwhile = await hashPassword('changed by TMC meanwhile');
    await h.db('user_passwords').where({ user_id: id }).update({ password_hash: changedMeanwhile });
    expect(await replacePasswordHashIf(h.db, id, H.legacy.hash, await hashPassword(H.legacy.password))).toBe(false);
    expect(await storedHash(id)).toBe(changedMeanwhile);
    expect(await replacePasswordHashIf(h.db, id, changedMeanwhile, H.nfc.hash)).toBe(true);
    expect(await storedHash(id)).toBe(H.nfc.hash);
  });
});
