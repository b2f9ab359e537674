import type { Logger } from '../core/logger.js';
import type { StageMetrics } from '../core/metrics.js';

interface StageCounts {
  in: number;
  out: number;
  rejected: number;
  deadLettered: number;
}

async function countsOf(metrics: StageMetrics, stage: string): Promise<StageCounts> {
  const value = async (c: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> }) =>
    (await c.get()).values.find((v) => v.labels.stage === stage)?.value ?? 0;
  return { in: await value(metrics.recordsIn), out: await value(metrics.recordsOut), rejected: await value(metrics.rejected), deadLettered: await value(metrics.deadLettered) };
}

/** `responses 12→11 (1 rejected) 0.4/s`: what a person watching a run wants to read. */
export function describeStage(stage: string, c: StageCounts, perSecond: number): string {
  const flow = c.in > 0 ? `${c.in}→${c.out}` : `${c.out} out`;
  const extra = [c.rejected ? `${c.rejected} rejected` : '', c.deadLettered ? `${c.deadLettered} dead-lettered` : ''].filter(Boolean).join(', ');
  return `${stage} ${flow}${extra ? ` (${extra})` : ''} ${perSecond.toFixed(1)}/s`;
}

/** One progress line every interval with every stage's totals and rate since the last line. */
export function startProgress(metrics: StageMetrics, stages: Iterable<string>, intervalMs: number, logger: Logger): { stop(): void } {
  // Runners are listed downstream first; show the pipeline in its reading order.
  const names = [...stages].reverse();
  const last = new Map<string, number>();
  let lastAt = Date.now();
  const tick = async () => {
    const now = Date.now();
    const seconds = Math.max(0.001, (now - lastAt) / 1000);
    lastAt = now;
    const parts: string[] = [];
    const fields: Record<string, StageCounts> = {};
    for (const stage of names) {
      const c = await countsOf(metrics, stage);
      const done = c.in || c.out + c.rejected;
      parts.push(describeStage(stage, c, (done - (last.get(stage) ?? 0)) / seconds));
      last.set(stage, done);
      fields[stage] = c;
    }
    logger.info({ stages: fields }, `progress: ${parts.join(' | ')}`);
  };
  const timer = setInterval(() => void tick(), intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      void tick();
    },
  };
}
