import { statSync, rmSync, mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { exactSearch, Index, MetricKind, ScalarKind } from 'usearch';
import { DEFAULT_NEIGHBOR_INDEX } from '../../src/embedding/neighbor-index.js';
import { measurement, randomUnitVectors, rssAfterGc, subspaceUnitVectors, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const DIMENSIONS = 384;
const SUBSPACE_RANK = 16;
const QUERIES = 300;
const SINGLE_INSERTS = 300;

interface Dataset {
  label: string;
  vectors: (count: number, seed: number) => Float32Array;
}
const SUBSPACE: Dataset = { label: `unit vectors in a random ${SUBSPACE_RANK}-d subspace`, vectors: (n, seed) => subspaceUnitVectors(n, DIMENSIONS, SUBSPACE_RANK, seed) };
const UNIFORM: Dataset = { label: 'uniform random unit vectors', vectors: (n, seed) => randomUnitVectors(n, DIMENSIONS, seed) };

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
 * Adds in chunks on all cores (the quickest way to the same graph; the stage adds one at a time) until `size`
 * vectors or the time budget is spent.
 */
function build(index: Index, data: Float32Array, size: number, budgetMs: number, ctx: BenchContext) {
  const chunk = 10_000;
  const started = performance.now();
  let built = 0;
  let lastRate = 0;
  while (built < size && performance.now() - started < budgetMs) {
    const n = Math.min(chunk, size - built);
    const t = performance.now();
    index.add(BigUint64Array.from({ length: n }, (_, i) => BigInt(built + i)), data.subarray(built * DIMENSIONS, (built + n) * DIMENSIONS), availableParallelism());
    lastRate = (n * 1000) / (performance.now() - t);
    built += n;
    if (built % 100_000 === 0) ctx.progress(`neighbors: built ${built / 1000}k of ${size / 1000}k in ${((performance.now() - started) / 1000).toFixed(0)} s (${lastRate.toFixed(0)} inserts/s now)`);
  }
  return { built, seconds: (performance.now() - started) / 1000, lastRate };
}

async function measureSize(ctx: BenchContext, dataset: Dataset, size: number, budgetMs: number): Promise<Measurement[]> {
  // Queries are a separate array: usearch's exactSearch reads typed arrays from the start of their buffer.
  const data = dataset.vectors(size + SINGLE_INSERTS, size);
  const queries = dataset.vectors(QUERIES, 1);
  const rss0 = rssAfterGc();
  const index = projectIndex();
  const b = build(index, data, size, budgetMs, ctx);
  const rssGrowth = rssAfterGc() - rss0;
  // The saved index (vectors + graph) is what it holds in memory; RSS deltas blur with memory freed earlier.
  const dir = mkdtempSync(join(tmpdir(), 'magpie-bench-'));
  index.save(join(dir, 'index.usearch'));
  const indexBytes = statSync(join(dir, 'index.usearch')).size;
  rmSync(dir, { recursive: true, force: true });
  const flatBytes = b.built * DIMENSIONS * Float32Array.BYTES_PER_ELEMENT;
  const sizeLabel = b.built === size ? `${size / 1000}k` : `${size / 1000}k requested, ${b.built / 1000}k built in budget`;
  const label = `${sizeLabel}, ${dataset.label}`;

  // The stage's lookup: top-16 by cosine on one thread (NeighborIndex.search).
  let t = performance.now();
  const hnswBest: number[] = [];
  for (let q = 0; q < QUERIES; q++) hnswBest.push(index.search(row(queries, q), 16, 1).distances[0]!);
  const hnswRate = (QUERIES * 1000) / (performance.now() - t);
  t = performance.now();
  const exact = exactSearch(data.subarray(0, b.built * DIMENSIONS), queries, DIMENSIONS, 1, MetricKind.Cos, 1);
  const bruteRate = (QUERIES * 1000) / (performance.now() - t);
  const recall = hnswBest.filter((d, q) => d <= exact.distances[q]! + 1e-5).length / QUERIES;

  // The stage's insert: one vector on one thread (NeighborIndex.add), into the index as built.
  t = performance.now();
  for (let i = 0; i < SINGLE_INSERTS; i++) index.add(BigInt(b.built + i), row(data, size + i), 1);
  const singleRate = (SINGLE_INSERTS * 1000) / (performance.now() - t);

  ctx.progress(`neighbors ${label}: HNSW ${hnswRate.toFixed(0)} lookups/s (recall@1 ${recall.toFixed(3)}) vs brute force ${bruteRate.toFixed(1)}/s; build ${b.seconds.toFixed(0)} s; ${(indexBytes / 2 ** 20).toFixed(0)} MB vs ${(flatBytes / 2 ** 20).toFixed(0)} MB flat`);
  const details = {
    dataset: dataset.label,
    vectors: b.built,
    requested: size,
    recallAt1: Number(recall.toFixed(3)),
    buildSeconds: Number(b.seconds.toFixed(1)),
    buildThreads: availableParallelism(),
    bulkInsertsPerSecondAtEnd: Math.round(b.lastRate),
    singleInsertsPerSecond: Math.round(singleRate),
    rssGrowthMb: Math.round(rssGrowth / 2 ** 20),
    ...(b.built < size ? { projectedBuildSecondsAtEndRate: Math.round(b.seconds + (size - b.built) / b.lastRate) } : {}),
    hnsw: DEFAULT_NEIGHBOR_INDEX,
  };
  return [
    measurement('neighbors', `HNSW lookups, ${label}`, hnswRate, 'lookups/s', { name: 'brute-force scan (usearch exactSearch, 1 thread)', value: bruteRate }, details),
    measurement('neighbors', `HNSW index size (vectors + graph), ${label}`, indexBytes / 2 ** 20, 'MB', { name: 'the vectors alone (float32)', value: flatBytes / 2 ** 20 }, details, 'lower'),
    measurement('neighbors', `HNSW build on ${availableParallelism()} threads, ${label}`, b.seconds, 's', undefined, details, 'lower'),
  ];
}

export const neighborsSuite: Suite = {
  name: 'neighbors',
  description: 'near-duplicate index (HNSW, project settings): lookups/s, memory and build time at 10k/100k/1M vectors vs a brute-force SIMD scan',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const sizes = ctx.quick ? [10_000, 100_000] : [10_000, 100_000, 1_000_000];
    // BENCH_INDEX_BUDGET_S caps each build; a capped row says how far it got and projects the rest.
    const budgetMs = Number(process.env.BENCH_INDEX_BUDGET_S ?? (ctx.quick ? 120 : 3_600)) * 1000;
    const out: Measurement[] = [];
    // HNSW's worst case first: no neighbourhood structure at all.
    out.push(...(await measureSize(ctx, UNIFORM, 10_000, budgetMs)));
    for (const size of sizes) out.push(...(await measureSize(ctx, SUBSPACE, size, budgetMs)));
    return out;
  },
};
