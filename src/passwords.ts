/**
 * Password hashing, interchangeable with headless-lms: Argon2id v19, m=65536 KiB, t=3, p=4,
 * 32-byte output, random 16-byte salt, stored as a PHC string. Passwords are NFC-normalized
 * before hashing and before verifying, as TMC does.
 */
import argon2 from 'argon2';

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

export function passwordTooLong(password: string): boolean {
  return Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES;
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
