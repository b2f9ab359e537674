import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../../src/core/logger.js';

/** One figure of the benchmark, with the baseline it is compared against (measured in the same run). */
export interface Measurement {
  suite: string;
  /** What was measured, e.g. `avro encode (Conversation)`. */
  name: string;
  value: number;
  /** e.g. `records/s`; the baseline has the same unit. */
  unit: string;
  baseline?: { name: string; value: number };
  /** value ÷ baseline.value. */
  ratio?: number;
  /** Whether a higher value is better (throughputs) or lower (memory, build time). */
  better: 'higher' | 'lower';
  /** Anything that explains the figure: settings, sizes, secondary numbers. */
  details?: Record<string, unknown>;
}

export interface BenchContext {
  readonly quick: boolean;
  readonly logger: Logger;
  /** Bootstrap servers of the broker the run uses (started on first call unless KAFKA_BROKERS is set). */
  brokers(): Promise<string[]>;
  /** Progress line on stderr. */
  progress(message: string): void;
}

export interface Suite {
  readonly name: string;
  readonly description: string;
  run(ctx: BenchContext): Promise<Measurement[]>;
}

export function measurement(
  suite: string,
  name: string,
  value: number,
  unit: string,
  baseline: { name: string; value: number } | undefined,
  details?: Record<string, unknown>,
  better: 'higher' | 'lower' = 'higher',
): Measurement {
  return {
    suite, name, value, unit, better,
    ...(baseline ? { baseline, ratio: baseline.value === 0 ? Number.NaN : value / baseline.value } : {}),
    ...(details ? { details } : {}),
  };
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Operations per second of `fn` (each call does `opsPerCall` operations), run repeatedly for at least `minMs`
 * after a warm-up call.
 */
export async function opsPerSecond(fn: () => unknown, opsPerCall: number, minMs: number): Promise<number> {
  await fn();
  let calls = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < minMs) {
    await fn();
    calls++;
    elapsed = performance.now() - start;
  }
  return (calls * opsPerCall * 1000) / elapsed;
}

/**
 * Candidate and baseline measured in alternating rounds (the machine's background load hits both alike);
 * the median of each is reported.
 */
export async function compare(
  candidate: () => unknown,
  baseline: () => unknown,
  opsPerCall: number,
  options: { rounds: number; roundMs: number },
): Promise<{ candidate: number; baseline: number }> {
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < options.rounds; r++) {
    a.push(await opsPerSecond(candidate, opsPerCall, options.roundMs));
    b.push(await opsPerSecond(baseline, opsPerCall, options.roundMs));
  }
  return { candidate: median(a), baseline: median(b) };
}

// A collection before reading RSS frees native memory (usearch, onnxruntime) held by unreachable objects.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Resident set size in bytes, after a full collection. */
export function rssAfterGc(): number {
  gc();
  return process.memoryUsage().rss;
}

/** Random unit vectors, row-major, from a seeded generator so runs are comparable. */
export function randomUnitVectors(count: number, dimensions: number, seed = 42): Float32Array {
  const out = new Float32Array(count * dimensions);
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = 0; i < count; i++) {
    const o = i * dimensions;
    let norm = 0;
    for (let d = 0; d < dimensions; d += 2) {
      // Box-Muller: two normals per pair of uniforms; normal components give directions uniform on the sphere.
      const r = Math.sqrt(-2 * Math.log(1 - uniform()));
      const th = 2 * Math.PI * uniform();
      out[o + d] = r * Math.cos(th);
      if (d + 1 < dimensions) out[o + d + 1] = r * Math.sin(th);
    }
    for (let d = 0; d < dimensions; d++) norm += out[o + d]! * out[o + d]!;
    const inv = 1 / Math.sqrt(norm);
    for (let d = 0; d < dimensions; d++) out[o + d] = out[o + d]! * inv;
  }
  return out;
}

/**
 * Random unit vectors confined to a random `rank`-dimensional subspace of R^dimensions: the neighbourhood structure
 * of real sentence embeddings (which fill a low-dimensional part of their space), without a corpus. Uniformly
 * random 384-d vectors have none: every pair sits at cosine distance 1 ± 0.05.
 */
export function subspaceUnitVectors(count: number, dimensions: number, rank: number, seed = 42): Float32Array {
  const basis = randomUnitVectors(dimensions, rank, 7);
  const coords = randomUnitVectors(count, rank, seed);
  const out = new Float32Array(count * dimensions);
  for (let i = 0; i < count; i++) {
    const o = i * dimensions;
    let norm = 0;
    for (let d = 0; d < dimensions; d++) {
      let x = 0;
      for (let k = 0; k < rank; k++) x += basis[d * rank + k]! * coords[i * rank + k]!;
      out[o + d] = x;
      norm += x * x;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let d = 0; d < dimensions; d++) out[o + d] = out[o + d]! * inv;
  }
  return out;
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
