import { EventEmitter } from 'node:events';

export type CircuitState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. */
  failureThreshold: number;
  /** Wait before the first probe once open; doubles after each failed probe. */
  coolDownMs: number;
  /** Longest wait between two probes. */
  maxCoolDownMs: number;
}

export interface CircuitStateChange {
  state: CircuitState;
  /** Consecutive failures so far. */
  failures: number;
  /** When opening: how long until the next probe. */
  coolDownMs?: number;
}

/**
 * closed → open after `failureThreshold` consecutive failures; open → half-open after a cool-down, when a single
 * caller probes; the probe's success closes the circuit, its failure opens it again with the cool-down doubled.
 * Callers ask `acquire()` before each call and report `success()` or `failure()` after it.
 * Events: 'state' (CircuitStateChange) on every transition.
 */
export class CircuitBreaker extends EventEmitter {
  private current: CircuitState = 'closed';
  private failures = 0;
  /** Failed probes since the circuit last closed: each doubles the cool-down. */
  private failedProbes = 0;
  private probing = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(readonly options: CircuitBreakerOptions) {
    super();
    if (options.failureThreshold < 1) throw new RangeError('failureThreshold must be at least 1');
  }

  get state(): CircuitState {
    return this.current;
  }

  /**
   * Resolves when a call may go ahead: at once while closed; while open, after the cool-down, one caller at a
   * time as the probe. Rejects with the signal's reason when it aborts first.
   */
  async acquire(signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      if (this.current === 'closed') return;
      if (this.current === 'half-open' && !this.probing) {
        this.probing = true;
        return;
      }
      await this.nextChange(signal);
    }
  }

  /** The call answered: the dependency is up. */
  success(): void {
    this.failures = 0;
    this.failedProbes = 0;
    this.probing = false;
    if (this.current !== 'closed') this.transition('closed');
  }

  /** The call failed in a way that says the dependency is down (timeouts, 5xx, refused connections). */
  failure(): void {
    this.failures++;
    if (this.current === 'half-open' && this.probing) {
      this.probing = false;
      this.failedProbes++;
      this.open();
    } else if (this.current === 'closed' && this.failures >= this.options.failureThreshold) {
      this.open();
    }
  }

  /** A call that went ahead ended without an answer either way (it was cancelled): let another caller probe. */
  release(): void {
    if (this.current === 'half-open' && this.probing) {
      this.probing = false;
      this.wake();
    }
  }

  /** Stops the cool-down timer and lets every waiter go (on shutdown). */
  dispose(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.current = 'closed';
    this.wake();
  }

  private open(): void {
    const coolDownMs = Math.min(this.options.maxCoolDownMs, this.options.coolDownMs * 2 ** this.failedProbes);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.transition('half-open');
    }, coolDownMs);
    this.transition('open', coolDownMs);
  }

  private transition(state: CircuitState, coolDownMs?: number): void {
    if (state === 'closed') {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.current = state;
    const change: CircuitStateChange = { state, failures: this.failures, ...(coolDownMs === undefined ? {} : { coolDownMs }) };
    this.emit('state', change);
    this.wake();
  }

  private wake(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }

  private nextChange(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiters.delete(done);
        reject(signal!.reason);
      };
      const done = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
