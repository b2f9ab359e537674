import { isRetryable } from './errors.js';

export interface BackoffOptions {
  /** Attempts in total, the first included. */
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
  /** Multiplier per attempt. */
  factor?: number;
  signal?: AbortSignal;
  /** Decides whether an error is worth another attempt; default: MagpieError.retryable. */
  shouldRetry?: (err: unknown, attempt: number) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

export const DEFAULT_BACKOFF: BackoffOptions = { attempts: 5, initialDelayMs: 200, maxDelayMs: 10_000, factor: 2 };

/** Full-jitter exponential delay for the given 1-based attempt that just failed. */
export function backoffDelay(attempt: number, opts: Pick<BackoffOptions, 'initialDelayMs' | 'maxDelayMs' | 'factor'>, random: () => number = Math.random): number {
  const ceiling = Math.min(opts.maxDelayMs, opts.initialDelayMs * (opts.factor ?? 2) ** (attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Runs `fn` until it succeeds, the error is not retryable, attempts run out or the signal aborts. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, opts: BackoffOptions): Promise<T> {
  const shouldRetry = opts.shouldRetry ?? ((err: unknown) => isRetryable(err));
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= opts.attempts || opts.signal?.aborted || !shouldRetry(err, attempt)) throw err;
      const delay = backoffDelay(attempt, opts);
      opts.onRetry?.(err, attempt, delay);
      await sleep(delay, opts.signal);
    }
  }
}
