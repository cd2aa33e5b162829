/**
 * The API's queue of password hashes and verifications: argon2 work runs through here, never
 * straight from a handler.
 *
 * - **Bounded concurrency.** argon2 runs on libuv's threadpool, which Node's DNS lookups
 *   (getaddrinfo: TMC, SMTP and PostgreSQL reached by host name), file I/O and zlib share. The
 *   queue runs at most `concurrency` jobs at once (default: the pool's size less two), so a burst
 *   of logins leaves threads for a host-name lookup instead of making it wait seconds.
 * - **Bounded length.** At most `maxQueued` jobs wait; one more is refused at once
 *   (HashQueueBusy `queue_full`: 503 with Retry-After), instead of a backlog that outlives its callers.
 * - **Deadlines.** Each job carries its caller's deadline and abort signal. A job whose caller
 *   has gone (TMC's client gives up after 10 s), whose deadline passes while it waits, or that
 *   could not finish before its deadline by the time its turn comes (by the recent cost of a
 *   hash), is dropped, not done (HashQueueBusy `deadline` or `caller_gone`: 503 with
 *   Retry-After). Not refused on arrival by an estimate of the work
 *   ahead: under a noisy load that estimate refused work that would have made it.
 *
 * Metrics: `accounts_hash_queue_length` (waiting), `accounts_hash_queue_running`,
 * `accounts_hash_queue_wait_seconds` (time from arrival to start), and
 * `accounts_hash_queue_dropped_total{reason}`.
 *
 * It wraps the argon2 calls of passwords.ts and changes nothing in what they compute.
 */
import { availableParallelism } from 'node:os';
import client from 'prom-client';
import { registry } from './metrics';
import { dummyVerify, hashPassword, verifyPassword } from './passwords';

/** Why a job was not run. */
export type HashDropReason = 'queue_full' | 'deadline' | 'caller_gone';

/** The job was not run; the caller answers 503 with Retry-After. */
export class HashQueueBusy extends Error {
  override name = 'HashQueueBusy';
  constructor(
    readonly reason: HashDropReason,
    /** When to try again, in seconds: about the time the queue needs to clear. */
    readonly retryAfterSeconds = 1,
  ) {
    super(reason === 'queue_full' ? 'the password hashing queue is full' : reason === 'deadline' ? 'no time left to hash the password' : 'the caller went away');
  }
}

export interface HashQueueOptions {
  /** Jobs run at once. */
  concurrency: number;
  /** Jobs waiting, beyond those running; one more is refused. */
  maxQueued: number;
}

export interface HashJobOptions {
  /** When the result is no longer useful, in ms since the epoch. */
  deadline: number;
  /** `write` jobs wait only behind other writes. Default `verify`. */
  kind?: 'write' | 'verify';
  /** Aborted when the caller goes away. */
  signal?: AbortSignal;
}

interface Waiting {
  kind: 'write' | 'verify';
  run: () => void;
  drop: (reason: HashDropReason) => void;
  deadline: number;
  enqueuedAt: number;
}

/** Every queue of this process (one per API app), for the gauges. */
const queues = new Set<HashQueue>();
new client.Gauge({
  name: 'accounts_hash_queue_length',
  help: 'Password hashes and verifications waiting for a thread',
  registers: [registry],
  collect() {
    this.set([...queues].reduce((n, q) => n + q.length, 0));
  },
});
new client.Gauge({
  name: 'accounts_hash_queue_running',
  help: 'Password hashes and verifications running',
  registers: [registry],
  collect() {
    this.set([...queues].reduce((n, q) => n + q.active, 0));
  },
});
const queueWait = new client.Histogram({
  name: 'accounts_hash_queue_wait_seconds',
  help: 'Time a password hash or verification waited in the queue before it ran',
  buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8],
  registers: [registry],
});
const queueDropped = new client.Counter({
  name: 'accounts_hash_queue_dropped_total',
  help: 'Password hashes and verifications not run: queue full, deadline, or caller gone',
  labelNames: ['reason'] as const,
  registers: [registry],
});

/** The default concurrency: the libuv threadpool's size less two (for DNS and I/O), at most the cores. */
export function defaultHashConcurrency(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(availableParallelism(), pool - 2));
}

export class HashQueue {
  private readonly waiting: Waiting[] = [];
  private running = 0;
  /** Recent cost of one job, in ms (an exponentially weighted mean); starts pessimistic. */
  private costMs = 300;

  constructor(private readonly options: HashQueueOptions) {
    queues.add(this);
  }

  /** Jobs waiting now. */
  get length(): number {
    return this.waiting.length;
  }

  /** Jobs running now. */
  get active(): number {
    return this.running;
  }

  /** Seconds a refused caller should wait before trying again: about the time to clear the queue. */
  get retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(((this.waiting.length / this.options.concurrency + 1) * this.costMs) / 1000));
  }

  /** Hashes `password` (passwords.ts) within the job's deadline. */
  hash(password: string, job: HashJobOptions): Promise<string> {
    return this.run(() => hashPassword(password), { kind: 'write', ...job });
  }

  /** Verifies `password` against `hash` (passwords.ts) within the job's deadline. */
  verify(hash: string, password: string, job: HashJobOptions): Promise<boolean> {
    return this.run(() => verifyPassword(hash, password), job);
  }

  /** A verification's worth of work for an unknown user (passwords.ts), within the deadline. */
  dummyVerify(password: string, job: HashJobOptions): Promise<false> {
    return this.run(() => dummyVerify(password), job);
  }

  /**
   * Runs `work` when a slot is free and the job is still wanted; rejects with HashQueueBusy when
   * it is dropped. `work` itself is never interrupted once it has started.
   */
  run<T>(work: () => Promise<T>, { deadline, signal, kind = 'verify' }: HashJobOptions): Promise<T> {
    if (signal?.aborted) return this.refuse('caller_gone');
    const now = Date.now();
    if (this.waiting.length >= this.options.maxQueued) return this.refuse('queue_full');
    // Where it waits: a write after the other writes, a verification at the end.
    const position = kind === 'write' ? this.waiting.filter((w) => w.kind === 'write').length : this.waiting.length;
    if (now + this.costMs > deadline) return this.refuse('deadline');

    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => entry.drop('caller_gone');
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const entry: Waiting = {
        kind,
        deadline,
        enqueuedAt: now,
        run: () => {
          cleanup();
          this.running++;
          queueWait.observe((Date.now() - now) / 1000);
          const started = Date.now();
          work()
            .then(resolve, reject)
            .finally(() => {
              this.costMs = 0.8 * this.costMs + 0.2 * (Date.now() - started);
              this.running--;
              this.next();
            });
        },
        drop: (reason) => {
          const i = this.waiting.indexOf(entry);
          if (i < 0) return;
          this.waiting.splice(i, 1);
          cleanup();
          queueDropped.inc({ reason });
          reject(new HashQueueBusy(reason, this.retryAfterSeconds));
        },
      };
      this.waiting.splice(position, 0, entry);
      timer = setTimeout(() => entry.drop('deadline'), Math.max(0, deadline - now));
      timer.unref();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.next();
    });
  }

  private refuse(reason: HashDropReason): Promise<never> {
    queueDropped.inc({ reason });
    return Promise.reject(new HashQueueBusy(reason, this.retryAfterSeconds));
  }

  /** Starts waiting jobs while slots are free, dropping those that can no longer finish in time. */
  private next(): void {
    while (this.running < this.options.concurrency && this.waiting.length > 0) {
      const entry = this.waiting[0]!;
      if (Date.now() + this.costMs > entry.deadline) {
        entry.drop('deadline');
        continue;
      }
      this.waiting.shift();
      entry.run();
    }
  }
}
