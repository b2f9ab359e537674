import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CircuitBreaker, type CircuitState, type CircuitStateChange } from '../../../src/core/circuit-breaker.js';

function breaker(failureThreshold = 3) {
  const b = new CircuitBreaker({ failureThreshold, coolDownMs: 1_000, maxCoolDownMs: 3_000 });
  const states: CircuitStateChange[] = [];
  b.on('state', (c: CircuitStateChange) => states.push(c));
  return { b, states };
}

/** Whether `p` has settled after the microtasks queued so far. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  await vi.advanceTimersByTimeAsync(0);
  return done;
}

describe('CircuitBreaker', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('stays closed below the threshold, and a success resets the count', async () => {
    const { b, states } = breaker(3);
    b.failure();
    b.failure();
    b.success();
    b.failure();
    b.failure();
    expect(b.state).toBe('closed');
    expect(states).toEqual([]);
    await b.acquire();
  });

  it('opens after K consecutive failures, holds callers back, then lets exactly one probe through', async () => {
    const { b, states } = breaker(2);
    b.failure();
    b.failure();
    expect(b.state).toBe('open');
    expect(states[0]).toEqual({ state: 'open', failures: 2, coolDownMs: 1_000 });
    const first = b.acquire();
    const second = b.acquire();
    expect(await settled(first)).toBe(false);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(b.state).toBe('half-open');
    expect(await settled(first)).toBe(true);
    expect(await settled(second)).toBe(false);
    b.success();
    expect(b.state).toBe('closed');
    expect(await settled(second)).toBe(true);
    expect(states.map((s) => s.state)).toEqual<CircuitState[]>(['open', 'half-open', 'closed']);
  });

  it('re-opens with a doubled cool-down (capped) when a probe fails', async () => {
    const { b, states } = breaker(1);
    b.failure();
    for (const expected of [2_000, 3_000, 3_000]) {
      await vi.advanceTimersByTimeAsync(states.at(-1)!.coolDownMs!);
      await b.acquire();
      b.failure();
      expect(states.at(-1)).toMatchObject({ state: 'open', coolDownMs: expected });
    }
    await vi.advanceTimersByTimeAsync(3_000);
    await b.acquire();
    b.success();
    b.failure();
    expect(states.at(-1)).toMatchObject({ state: 'open', coolDownMs: 1_000 });
  });

  it('hands the probe to another caller when the probing one is cancelled', async () => {
    const { b } = breaker(1);
    b.failure();
    await vi.advanceTimersByTimeAsync(1_000);
    await b.acquire();
    const next = b.acquire();
    expect(await settled(next)).toBe(false);
    b.release();
    expect(await settled(next)).toBe(true);
  });

  it('rejects a waiting caller whose signal aborts', async () => {
    const { b } = breaker(1);
    b.failure();
    const stop = new AbortController();
    const waiting = b.acquire(stop.signal);
    stop.abort(new Error('stage stopping'));
    await expect(waiting).rejects.toThrow('stage stopping');
    b.dispose();
  });
});
