/**
 * The hashing queue (src/hashing.ts): bounded, deadline-aware, writes first, with metrics; and
 * the reason it exists, a DNS lookup that argon2 would otherwise starve of libuv threads.
 */
import dns from 'node:dns';
import { describe, expect, it } from 'vitest';
import { HashQueue, HashQueueBusy } from '../src/hashing';
import { registry } from '../src/metrics';
import { hashPassword } from '../src/passwords';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A job that takes `ms` and records when it ran. */
function job(log: string[], name: string, ms = 50) {
  return async () => {
    log.push(`start ${name}`);
    await sleep(ms);
    log.push(`end ${name}`);
    return name;
  };
}

const later = (ms = 10_000) => Date.now() + ms;

describe('HashQueue', () => {
  it('runs at most `concurrency` jobs at once, in order', async () => {
    const q = new HashQueue({ concurrency: 2, maxQueued: 10 });
    const log: string[] = [];
    let running = 0;
    let most = 0;
    const results = await Promise.all(
      ['a', 'b', 'c', 'd', 'e'].map((n) =>
        q.run(async () => {
          most = Math.max(most, ++running);
          await job(log, n, 30)();
          running--;
          return n;
        }, { deadline: later() }),
      ),
    );
    expect(results).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(most).toBe(2);
    expect(log.filter((l) => l.startsWith('start'))).toEqual(['start a', 'start b', 'start c', 'start d', 'start e']);
  });

  it('refuses a job at once when the queue is full (503 with Retry-After)', async () => {
    const q = new HashQueue({ concurrency: 1, maxQueued: 2 });
    const log: string[] = [];
    const admitted = ['a', 'b', 'c'].map((n) => q.run(job(log, n), { deadline: later() }));
    const refused = q.run(job(log, 'd'), { deadline: later() });
    await expect(refused).rejects.toMatchObject({ name: 'HashQueueBusy', reason: 'queue_full' });
    expect(((await refused.catch((e: HashQueueBusy) => e)) as HashQueueBusy).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(await Promise.all(admitted)).toEqual(['a', 'b', 'c']);
    expect(log).not.toContain('start d');
  });

  it('drops a waiting job whose caller went away; its work never runs', async () => {
    const q = new HashQueue({ concurrency: 1, maxQueued: 10 });
    const log: string[] = [];
    const first = q.run(job(log, 'first', 200), { deadline: later() });
    const gone = new AbortController();
    const dropped = q.run(job(log, 'abandoned'), { deadline: later(), signal: gone.signal });
    const third = q.run(job(log, 'third'), { deadline: later() });
    gone.abort();
    await expect(dropped).rejects.toMatchObject({ reason: 'caller_gone' });
    expect(await first).toBe('first');
    expect(await third).toBe('third');
    expect(log).not.toContain('start abandoned');
  });

  it('drops a waiting job when its deadline passes, at the deadline, not when its turn comes', async () => {
    const q = new HashQueue({ concurrency: 1, maxQueued: 10 });
    const log: string[] = [];
    const blocker = q.run(job(log, 'blocker', 1_500), { deadline: later() });
    // Admitted (the queue's cost estimate starts at 300 ms), but the blocker outlasts it.
    const started = Date.now();
    const late = q.run(job(log, 'late'), { deadline: Date.now() + 700 });
    await expect(late).rejects.toMatchObject({ reason: 'deadline' });
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(650);
    expect(waited).toBeLessThan(1_200);
    await blocker;
    expect(log).not.toContain('start late');
  });

  it('refuses at once a job whose deadline is too close for even one hash', async () => {
    const q = new HashQueue({ concurrency: 1, maxQueued: 100 });
    const log: string[] = [];
    const started = Date.now();
    await expect(q.run(job(log, 'hopeless'), { deadline: Date.now() + 50 })).rejects.toMatchObject({ reason: 'deadline' });
    expect(Date.now() - started).toBeLessThan(40);
    expect(log).toEqual([]);
  });

  it('puts writes (a password to store) ahead of waiting verifications', async () => {
    const q = new HashQueue({ concurrency: 1, maxQueued: 10 });
    const log: string[] = [];
    const all = [
      q.run(job(log, 'verify 1'), { deadline: later() }),
      q.run(job(log, 'verify 2'), { deadline: later() }),
      q.run(job(log, 'verify 3'), { deadline: later() }),
      q.run(job(log, 'write 1'), { deadline: later(), kind: 'write' }),
      q.run(job(log, 'write 2'), { deadline: later(), kind: 'write' }),
    ];
    await Promise.all(all);
    expect(log.filter((l) => l.startsWith('start')).map((l) => l.slice(6))).toEqual(['verify 1', 'write 1', 'write 2', 'verify 2', 'verify 3']);
  });

  it('shows its length, running jobs, waiting time and drops on /metrics', async () => {
    const q = new HashQueue({ concurrency: 1, maxQueued: 1 });
    const log: string[] = [];
    const a = q.run(job(log, 'a', 200), { deadline: later() });
    const b = q.run(job(log, 'b', 10), { deadline: later() });
    await q.run(job(log, 'c'), { deadline: later() }).catch(() => undefined);
    const during = await registry.metrics();
    expect(during).toMatch(/^accounts_hash_queue_length \d+$/m);
    expect(Number(/^accounts_hash_queue_length (\d+)$/m.exec(during)![1])).toBeGreaterThanOrEqual(1);
    expect(Number(/^accounts_hash_queue_running (\d+)$/m.exec(during)![1])).toBeGreaterThanOrEqual(1);
    expect(during).toMatch(/^accounts_hash_queue_dropped_total\{reason="queue_full"\} [1-9]/m);
    await Promise.all([a, b]);
    const after = await registry.metrics();
    expect(after).toMatch(/^accounts_hash_queue_wait_seconds_count [1-9]/m);
    expect(after).toMatch(/^accounts_hash_queue_wait_seconds_bucket\{le="0.25"\} /m);
  });
});

describe('host-name lookups during a burst of password hashes (libuv threadpool, 4 threads)', () => {
  const lookupMs = () =>
    new Promise<number>((resolve, reject) => {
      const started = Date.now();
      dns.lookup('localhost', (err) => (err ? reject(err) : resolve(Date.now() - started)));
    });

  it('stay fast when the hashes run through the queue (2 at a time, leaving threads free)', async () => {
    const idle = await lookupMs();
    const q = new HashQueue({ concurrency: 2, maxQueued: 100 });
    const burst = Promise.all(Array.from({ length: 24 }, (_, i) => q.hash(`password ${i}`, { deadline: later(60_000) })));
    await sleep(100);
    const during = await lookupMs();
    await burst;
    // Straight into argon2, as before the queue: the lookup waits behind the whole burst.
    const direct = Promise.all(Array.from({ length: 24 }, (_, i) => hashPassword(`password ${i}`)));
    await sleep(100);
    const starved = await lookupMs();
    await direct;
    console.log(`lookup of localhost: idle ${idle} ms, during 24 queued hashes ${during} ms, during 24 direct hashes ${starved} ms`);
    expect(during).toBeLessThan(Math.max(250, starved / 4));
    expect(starved).toBeGreaterThan(during);
  });
});
