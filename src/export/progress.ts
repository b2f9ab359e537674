import cliProgress from 'cli-progress';
import type { Logger } from '../core/logger.js';

/** Progress of reading a known number of records: a bar on a terminal, a log line now and then otherwise. */
export interface ReadProgress {
  start(total: number): void;
  tick(): void;
  stop(): void;
}

const round = (n: number) => Math.round(n * 10) / 10;

export function readProgress(logger: Logger, options: { tty: boolean; label: string; logEveryMs?: number }): ReadProgress {
  let done = 0;
  let total = 0;
  let startedAt = 0;
  const rate = () => done / Math.max(0.001, (Date.now() - startedAt) / 1000);
  if (options.tty) {
    const bar = new cliProgress.SingleBar(
      { format: `${options.label} |{bar}| {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted}`, hideCursor: true, etaBuffer: 200 },
      cliProgress.Presets.shades_classic,
    );
    let lastDraw = 0;
    return {
      start: (t) => {
        total = t;
        startedAt = Date.now();
        bar.start(total, 0, { rate: 0 });
      },
      tick: () => {
        done++;
        // Offsets count transaction markers too: the total is an upper bound, so the bar may end short of it.
        const now = Date.now();
        if (now - lastDraw >= 100) {
          lastDraw = now;
          bar.update(done, { rate: round(rate()) });
        }
      },
      stop: () => {
        bar.update(done, { rate: round(rate()) });
        bar.stop();
      },
    };
  }
  let timer: NodeJS.Timeout | undefined;
  const log = () => {
    const perSecond = rate();
    logger.info({ read: done, total, perSecond: round(perSecond), etaSeconds: perSecond > 0 ? Math.round(Math.max(0, total - done) / perSecond) : null }, `${options.label}: progress`);
  };
  return {
    start: (t) => {
      total = t;
      startedAt = Date.now();
      timer = setInterval(log, options.logEveryMs ?? 10_000);
      timer.unref();
    },
    tick: () => {
      done++;
    },
    stop: () => clearInterval(timer),
  };
}
