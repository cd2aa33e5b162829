/**
 * Password hashing, interchangeable with headless-lms: Argon2id v19, m=65536 KiB, t=3, p=4,
 * 32-byte output, random 16-byte salt, stored as a PHC string. Passwords are NFC-normalized
 * before hashing and before verifying, as TMC does.
 *
 * `verifyPasswordCompat` also accepts what headless-lms accepts from rows it hashed before it
 * normalized (raw bytes, until a cut-off) or with older parameters, and says when the stored hash
 * should be replaced; the caller does the compare-and-swap (db/users.ts replacePasswordHashIf).
 */
import argon2 from 'argon2';

/** Cap on new passwords of public signups, in UTF-8 bytes after NFC. The TMC endpoints have none. */
export const MAX_PASSWORD_BYTES = 1024;

const HASH_OPTIONS = {
  type: argon2.argon2id,
  memoryCost: 65536,
  timeCost: 3,
  parallelism: 4,
  hashLength: 32,
} as const;

export function normalizePassword(password: string): string {
  return password.normalize('NFC');
}

/**
 * True if the password is over MAX_PASSWORD_BYTES once NFC-normalized: what is hashed is the
 * normalized form, and NFC can make a string longer (U+0958 becomes two code points).
 */
export function passwordTooLong(password: string): boolean {
  return Buffer.byteLength(normalizePassword(password), 'utf8') > MAX_PASSWORD_BYTES;
}

/**
 * node-argon2 writes its parameters as `m=…,p=…,t=…`; the PHC convention (and what the
 * Rust argon2 crate writes) is `m=…,t=…,p=…`. Both verify on both sides, but we store the
 * canonical order so rows look the same whichever service wrote them.
 */
function canonicalParams(phc: string): string {
  return phc.replace(/\$m=(\d+),p=(\d+),t=(\d+)\$/, '$m=$1,t=$3,p=$2$');
}

export async function hashPassword(password: string): Promise<string> {
  return canonicalParams(await argon2.hash(normalizePassword(password), HASH_OPTIONS));
}

/** True only if `hash` is a valid argon2 PHC string and the password matches it. */
export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, normalizePassword(password));
  } catch {
    return false;
  }
}

/** Why a stored hash should be replaced after a successful verification. */
export type RehashReason = 'normalized' | 'parameters';

/** The outcome of `verifyPasswordCompat`: a value, never an exception. */
export type CompatVerification = { ok: false } | { ok: true; rehash: RehashReason | null };

export interface CompatOptions {
  /** Until this instant a password whose NFC form does not match is tried again as typed. */
  rawFallbackUntil: Date;
  /** The clock, for tests; defaults to now. */
  now?: Date;
}

/** True if the PHC string is argon2id v19 with this service's m, t and p. */
export function hasCurrentParameters(hash: string): boolean {
  if (!hash.startsWith('$argon2id$')) return false;
  try {
    return !argon2.needsRehash(hash, { ...HASH_OPTIONS, version: 0x13 });
  } catch {
    return false;
  }
}

/**
 * Verifies as headless-lms does since it normalizes passwords:
 * 1. the NFC form; on a match, `rehash: 'parameters'` if the hash is not argon2id v19 with
 *    m=65536, t=3, p=4 (headless-lms's earliest rows used argon2's defaults, m=19456, t=2, p=1);
 * 2. if that fails, the password differs from its NFC form and `now` is before
 *    `rawFallbackUntil`, the bytes as typed: rows hashed before normalization. A match there
 *    answers `rehash: 'normalized'`, so the caller re-stores the hash of the NFC form.
 * An unparsable hash is `{ok: false}`. A wrong password costs two verifications when it is not
 * in NFC, as in headless-lms.
 */
export async function verifyPasswordCompat(hash: string, password: string, options: CompatOptions): Promise<CompatVerification> {
  const normalized = normalizePassword(password);
  if (await verifyExact(hash, normalized)) return { ok: true, rehash: hasCurrentParameters(hash) ? null : 'parameters' };
  const now = options.now ?? new Date();
  if (normalized !== password && now < options.rawFallbackUntil && (await verifyExact(hash, password))) {
    return { ok: true, rehash: 'normalized' };
  }
  return { ok: false };
}

/** argon2 verification of exactly these characters (no normalization); false on a bad hash. */
async function verifyExact(hash: string, password: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, password);
  } catch {
    return false;
  }
}

let dummyHash: Promise<string> | undefined;

/**
 * Spends the same time as a real verification, for unknown users, so the response time does
 * not tell whether a user exists. Always false.
 */
export async function dummyVerify(password: string): Promise<false> {
  dummyHash ??= hashPassword('dummy password for timing equalization');
  await verifyPassword(await dummyHash, password);
  return false;
}
