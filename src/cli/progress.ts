import type { Logger } from '../core/logger.js';
import type { StageMetrics } from '../core/metrics.js';

async function counts(metrics: StageMetrics, stage: string) {
  const value = async (c: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> }) =>
    (await c.get()).values.find((v) => v.labels.stage === stage)?.value ?? 0;
  return {
    in: await value(metrics.recordsIn),
    out: await value(metrics.recordsOut),
    rejected: await value(metrics.rejected),
    dead: await value(metrics.deadLettered),
  };
}

/** One progress line per stage every interval: totals and the rate since the last line. */
export function startProgress(metrics: StageMetrics, stages: Iterable<string>, intervalMs: number, logger: Logger): { stop(): void } {
  const names = [...stages];
  const last = new Map<string, number>();
  let lastAt = Date.now();
  const tick = async () => {
    const now = Date.now();
    const seconds = Math.max(0.001, (now - lastAt) / 1000);
    lastAt = now;
    for (const stage of names) {
      const c = await counts(metrics, stage);
      const done = c.in || c.out + c.rejected;
      const rate = (done - (last.get(stage) ?? 0)) / seconds;
      last.set(stage, done);
      logger.info({ stage, in: c.in, out: c.out, rejected: c.rejected, deadLettered: c.dead, perSecond: Math.round(rate * 10) / 10 }, 'progress');
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      void tick();
    },
  };
}
