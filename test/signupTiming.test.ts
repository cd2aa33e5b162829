/**
 * Section 4 of issue 12: the time of `POST /api/v0/signups` does not tell whether the address is
 * new, has a pending signup, or has an active account. All three answer the same 202; this test
 * checks that they also take the same time.
 *
 * Method: one pending address and one active address, then rounds of three requests (a fresh
 * address, the pending one, the active one) in a rotating order, so background work (the new
 * signups' workflows, other people's processes on a shared machine) falls on all three alike.
 * Each request is timed from the client, over a kept-alive connection. The medians must lie
 * within MARGIN of each other: the slowest median at most MARGIN times the fastest.
 *
 * The margin: one argon2id hash (m=64 MiB, t=3) costs 60–150 ms on these 2-core machines and
 * dominates every path; the rest (one or two PostgreSQL statements and one Temporal call) is
 * 5–15 ms. Before the fix, new took ~8× as long as active; a leak of the size of a hash is far
 * outside 1.25, while the remaining structural differences stay well inside it.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startHarness, type Harness } from './support/harness';

const ROUNDS = Number(process.env.SIGNUP_TIMING_ROUNDS ?? 30);
const WARMUP_ROUNDS = 3;
const MARGIN = 1.25;

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function timedSignup(email: string): Promise<number> {
  const started = performance.now();
  const res = await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email, display_name: 'Timing', password: 'timing password' } });
  const ms = performance.now() - started;
  expect(res.status).toBe(202);
  expect(res.body).toEqual({ status: 'verification_sent' });
  return ms;
}

describe('POST /api/v0/signups takes the same time for a new, a pending and an active address', () => {
  it(`keeps the slowest median within ${MARGIN}× the fastest over ${ROUNDS} rounds`, async () => {
    const pending = `timing-pending-${randomUUID().slice(0, 8)}@example.org`;
    await timedSignup(pending);
    await eventually(() => h.mail.to(pending).length >= 1);

    // An active account, written as activation leaves it (the protocol that activates it is
    // tested elsewhere; here only its existence matters).
    const active = `timing-active-${randomUUID().slice(0, 8)}@example.org`;
    const tenant = await h.db('tenants').where({ identifier: 'default' }).first();
    await h.db('users').insert({ id: randomUUID(), status: 'active', tenant_id: tenant.id, identifier: active, display_name: 'Active', email_domain: 'example.org' });

    const samples: Record<'new' | 'pending' | 'active', number[]> = { new: [], pending: [], active: [] };
    const kinds = ['new', 'pending', 'active'] as const;
    for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
      for (let i = 0; i < kinds.length; i++) {
        const kind = kinds[(round + i) % kinds.length]!;
        const email = kind === 'new' ? `timing-new-${randomUUID().slice(0, 8)}@example.org` : kind === 'pending' ? pending : active;
        const ms = await timedSignup(email);
        if (round >= WARMUP_ROUNDS) samples[kind].push(ms);
      }
    }
    const medians = Object.fromEntries(kinds.map((k) => [k, Math.round(median(samples[k]) * 10) / 10])) as Record<(typeof kinds)[number], number>;
    const ratio = Math.max(...Object.values(medians)) / Math.min(...Object.values(medians));
    // The figures, for the record (docs/benchmarks.md quotes them with the machine's load).
    console.log(`signup timing over ${ROUNDS} rounds: medians (ms) ${JSON.stringify(medians)}, slowest/fastest ${ratio.toFixed(3)}`);
    expect(ratio).toBeLessThanOrEqual(MARGIN);
  }, 300_000);
});
