import { availableParallelism } from 'node:os';
import { exactSearch, Index, MetricKind, ScalarKind } from 'usearch';
import { DEFAULT_NEIGHBOR_INDEX } from '../../src/embedding/neighbor-index.js';
import { measurement, randomUnitVectors, rssAfterGc, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const DIMENSIONS = 384;
const QUERIES = 300;
const EXTRA_SINGLE_INSERTS = 300;

/** The usearch index NeighborIndex builds, with the project's HNSW settings (src/embedding/neighbor-index.ts). */
function projectIndex(): Index {
  return new Index({
    dimensions: DIMENSIONS,
    metric: MetricKind.Cos,
    quantization: ScalarKind.F32,
    connectivity: DEFAULT_NEIGHBOR_INDEX.connectivity,
    expansion_add: DEFAULT_NEIGHBOR_INDEX.expansionAdd,
    expansion_search: DEFAULT_NEIGHBOR_INDEX.expansionSearch,
    multi: false,
  });
}

const row = (data: Float32Array, i: number) => data.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS);

/**
 * Builds in chunks with all cores (the fastest way to get the same graph; the stage inserts one at a time) until
 * `size` vectors or the time budget is spent: random vectors make HNSW inserts grow costly with the index.
 */
function build(index: Index, data: Float32Array, size: number, budgetMs: number, ctx: BenchContext) {
  const chunk = 5_000;
  const started = performance.now();
  let built = 0;
  let lastRate = 0;
  while (built < size && performance.now() - started < budgetMs) {
    const n = Math.min(chunk, size - built);
    const t = performance.now();
    index.add(BigUint64Array.from({ length: n }, (_, i) => BigInt(built + i)), data.subarray(built * DIMENSIONS, (built + n) * DIMENSIONS), availableParallelism());
    lastRate = (n * 1000) / (performance.now() - t);
    built += n;
    if (built % 50_000 === 0) ctx.progress(`neighbors: built ${built} of ${size} (${lastRate.toFixed(0)} inserts/s now)`);
  }
  return { built, seconds: (performance.now() - started) / 1000, lastRate };
}

export const neighborsSuite: Suite = {
  name: 'neighbors',
  description: 'near-duplicate lookups/s, memory and build time of the HNSW index (project settings) at 10k/100k/1M random unit vectors vs a brute-force SIMD scan',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const sizes = ctx.quick ? [10_000, 100_000] : [10_000, 100_000, 1_000_000];
    const budgetMs = (ctx.quick ? 60 : 300) * 1000;
    const out: Measurement[] = [];
    const queries = randomUnitVectors(QUERIES, DIMENSIONS, 7);
    for (const size of sizes) {
      const data = randomUnitVectors(size + EXTRA_SINGLE_INSERTS, DIMENSIONS, size);
      const flatBytes = size * DIMENSIONS * Float32Array.BYTES_PER_ELEMENT;
      const index = projectIndex();
      const rss1 = rssAfterGc();
      const b = build(index, data, size, budgetMs, ctx);
      const indexBytes = rssAfterGc() - rss1;
      const label = b.built === size ? `${size / 1000}k` : `${size / 1000}k (budget: ${b.built / 1000}k built)`;

      // The stage's lookup: top-16 by cosine, one thread (NeighborIndex.search).
      let t = performance.now();
      const hnswBest: number[] = [];
      for (let q = 0; q < QUERIES; q++) hnswBest.push(index.search(row(queries, q), 16, 1).distances[0]!);
      const hnswRate = (QUERIES * 1000) / (performance.now() - t);
      t = performance.now();
      const exact = exactSearch(data.subarray(0, b.built * DIMENSIONS), queries, DIMENSIONS, 1, MetricKind.Cos, 1);
      const bruteRate = (QUERIES * 1000) / (performance.now() - t);
      const exactBest = 'counts' in exact ? Array.from({ length: QUERIES }, (_, q) => exact.distances[q]!) : [exact.distances[0]!];
      const recall = hnswBest.filter((d, q) => d <= exactBest[q]! + 1e-5).length / QUERIES;

      // The stage's insert: one vector, one thread (NeighborIndex.add), into the index as built.
      t = performance.now();
      for (let i = 0; i < EXTRA_SINGLE_INSERTS; i++) index.add(BigInt(b.built + i), row(data, size + i), 1);
      const singleRate = (EXTRA_SINGLE_INSERTS * 1000) / (performance.now() - t);

      ctx.progress(`neighbors ${label}: HNSW ${hnswRate.toFixed(0)} lookups/s (recall@1 ${recall.toFixed(3)}) vs brute force ${bruteRate.toFixed(1)}/s; build ${b.seconds.toFixed(0)} s; index ${(indexBytes / 2 ** 20).toFixed(0)} MB vs ${(flatBytes / 2 ** 20).toFixed(0)} MB flat`);
      const details = {
        vectors: b.built,
        requested: size,
        recallAt1: Number(recall.toFixed(3)),
        buildSeconds: Number(b.seconds.toFixed(1)),
        buildThreads: availableParallelism(),
        insertsPerSecondAtEnd: Math.round(b.lastRate),
        singleInsertsPerSecond: Math.round(singleRate),
        ...(b.built < size ? { projectedBuildSecondsAtEndRate: Math.round(b.seconds + (size - b.built) / b.lastRate) } : {}),
        hnsw: DEFAULT_NEIGHBOR_INDEX,
      };
      out.push(measurement('neighbors', `HNSW lookups, ${label} vectors`, hnswRate, 'lookups/s', { name: 'brute-force scan (usearch exactSearch, 1 thread)', value: bruteRate }, details));
      out.push(measurement('neighbors', `HNSW memory, ${label} vectors`, indexBytes / 2 ** 20, 'MB', { name: 'flat float32 matrix', value: flatBytes / 2 ** 20 }, details, 'lower'));
      out.push(measurement('neighbors', `HNSW build (${availableParallelism()} threads), ${label} vectors`, b.seconds, 's', undefined, details, 'lower'));
    }
    return out;
  },
};
