import type { Logger } from '../core/logger.js';
import type { StageMetrics, StageTotals } from '../core/metrics.js';
import type { Terminal } from './output.js';

type StageCounts = Pick<StageTotals, 'in' | 'out' | 'rejected' | 'deadLettered'>;

/** Records a stage has handled: its input, or for a source what it produced (kept or rejected). */
const handled = (c: StageCounts) => c.in || c.out + c.rejected;

/** `responses 12→11 (1 rejected) 0.4/s`: what a person watching a run wants to read. `out` is the main port. */
export function describeStage(stage: string, c: StageCounts, perSecond: number, target?: number): string {
  const flow = c.in > 0 ? `${c.in}→${c.out}` : target ? `${handled(c)}/${target} (${Math.floor((100 * handled(c)) / target)}%) ${c.out} out` : `${c.out} out`;
  const extra = [c.rejected ? `${c.rejected} rejected` : '', c.deadLettered ? `${c.deadLettered} dead-lettered` : ''].filter(Boolean).join(', ');
  return `${stage} ${flow}${extra ? ` (${extra})` : ''} ${perSecond.toFixed(1)}/s`;
}

/** `1h02m`, `3m05s`, `12s`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/**
 * Progress of a running topology. On a terminal: one live line, redrawn every second (stage flow, rates over
 * the last 30 s, ETA when a source has a count). Otherwise: a `progress` log line every `intervalMs`, with the
 * counts as fields for machines.
 */
export function startProgress(
  metrics: StageMetrics,
  stages: Iterable<string>,
  options: { intervalMs: number; logger: Logger; terminal?: Terminal; windowMs?: number },
): { stop(): void } {
  // Runners are listed downstream first; show the pipeline in its reading order.
  const names = [...stages].reverse();
  const live = options.terminal?.live ? options.terminal : undefined;
  const windowMs = live ? (options.windowMs ?? 30_000) : options.intervalMs;
  const samples = [{ at: Date.now(), done: new Map(names.map((s) => [s, handled(metrics.stageTotals(s))])) }];
  const render = () => {
    const now = Date.now();
    const counts = new Map(names.map((s) => [s, metrics.stageTotals(s)]));
    samples.push({ at: now, done: new Map(names.map((s) => [s, handled(counts.get(s)!)])) });
    while (samples.length > 2 && now - samples[1]!.at >= windowMs) samples.shift();
    const oldest = samples[0]!;
    const seconds = Math.max(0.001, (now - oldest.at) / 1000);
    const rate = (s: string) => ((handled(counts.get(s)!) - (oldest.done.get(s) ?? 0)) / seconds);
    let eta: number | undefined;
    const parts = names.map((s) => {
      const c = counts.get(s)!;
      const target = metrics.stageTarget(s);
      if (target !== undefined && rate(s) > 0) eta = Math.max(eta ?? 0, Math.max(0, target - handled(c)) / rate(s));
      return describeStage(s, c, rate(s), target);
    });
    return { text: `${parts.join(' | ')}${eta === undefined ? '' : ` | ETA ${formatDuration(eta)}`}`, counts, eta };
  };
  const tick = () => {
    const { text, counts, eta } = render();
    if (live) live.setStatus(text);
    else options.logger.info({ stages: Object.fromEntries(counts), ...(eta === undefined ? {} : { etaSeconds: Math.round(eta) }) }, `progress: ${text}`);
  };
  const timer = setInterval(tick, live ? 1_000 : options.intervalMs);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      tick();
      live?.endStatus();
    },
  };
}
