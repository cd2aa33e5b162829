/** Small statistics helpers for the benchmarks: percentiles of samples, and median/min/max of runs. */

/** The p-th percentile (0..100) of `samples`, nearest-rank; NaN for no samples. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1]!;
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Every run's value, in run order. */
  runs: number[];
}

/** Median, min and max over the runs' values. */
export function summarize(values: number[]): Summary {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, runs: values };
  const sorted = [...finite].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const median = sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, runs: values };
}

export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** `median (min–max)` for the table. */
export function fmt(s: Summary, digits = 1): string {
  if (!Number.isFinite(s.median)) return 'n/a';
  const f = (v: number) => v.toFixed(digits);
  return s.runs.length > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median);
}

/**
 * Runs `clients` closed loops of `op` until `durationMs` has passed; returns completions per
 * second (completions ÷ time until the last one finished) and every completion's latency in ms.
 */
export async function closedLoop(clients: number, durationMs: number, op: (client: number) => Promise<void>): Promise<{ perSecond: number; latencies: number[]; count: number; elapsedMs: number; errors: number; firstError?: string }> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const end = started + durationMs;
  let lastDone = started;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await op(client);
          const t1 = performance.now();
          latencies.push(t1 - t0);
          lastDone = Math.max(lastDone, t1);
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
      }
    }),
  );
  const elapsedMs = Math.max(lastDone - started, 1);
  return { perSecond: (latencies.length * 1000) / elapsedMs, latencies, count: latencies.length, elapsedMs, errors, firstError };
}
