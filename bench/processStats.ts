/**
 * What a child process (API or worker) reports about itself when its parent asks over IPC:
 * event-loop delay and utilization since the last ask, CPU time, RSS and the thread pool size.
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';

export interface ProcessStats {
  type: 'stats';
  pid: number;
  /** Event-loop utilization (0..1) since the previous ask. */
  elu: number;
  /** Event-loop delay since the previous ask, in ms. */
  delayP50: number;
  delayP99: number;
  delayMax: number;
  /** CPU time since the previous ask, in ms. */
  cpuUserMs: number;
  cpuSystemMs: number;
  rssMiB: number;
  uvThreadpoolSize: number;
  extra?: Record<string, unknown>;
}

/** Answers `{ type: 'stats?' }` IPC messages with ProcessStats. */
export function serveStats(extra?: () => Record<string, unknown>): void {
  if (!process.send) return;
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  let lastElu: EventLoopUtilization = performance.eventLoopUtilization();
  let lastCpu = process.cpuUsage();
  process.on('message', (m: unknown) => {
    if (!m || typeof m !== 'object' || (m as { type?: unknown }).type !== 'stats?') return;
    const elu = performance.eventLoopUtilization(lastElu);
    lastElu = performance.eventLoopUtilization();
    const cpu = process.cpuUsage(lastCpu);
    lastCpu = process.cpuUsage();
    const stats: ProcessStats = {
      type: 'stats',
      pid: process.pid,
      elu: elu.utilization,
      delayP50: delay.percentile(50) / 1e6,
      delayP99: delay.percentile(99) / 1e6,
      delayMax: delay.max / 1e6,
      cpuUserMs: cpu.user / 1000,
      cpuSystemMs: cpu.system / 1000,
      rssMiB: process.memoryUsage.rss() / 2 ** 20,
      uvThreadpoolSize: Number(process.env.UV_THREADPOOL_SIZE || 4),
      extra: extra?.(),
    };
    delay.reset();
    process.send?.(stats);
  });
}
