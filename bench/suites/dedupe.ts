import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { exactSearch, MetricKind } from 'usearch';
import { DEFAULT_NEIGHBOR_INDEX, NeighborIndex, RECALL_FIRST_NEIGHBOR_INDEX, type NeighborIndexConfig } from '../../src/embedding/neighbor-index.js';
import { DEFAULT_DUPLICATE_THRESHOLD, NearDuplicateFilter, nearDuplicate } from '../../src/processors/near-duplicate.js';
import type { InputRecord, StageContext } from '../../src/processors/stage.js';
import type { Conversation } from '../../src/serde/records.generated.js';
import { makeConversation } from '../../test/support/records.js';
import { englishSentences } from '../lib/corpus.js';
import { embedWithMiniLm } from '../lib/minilm.js';
import { measurement, median, randomUnitVectors, subspaceUnitVectors, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const DIMENSIONS = 384;
/** Share of records that are a light rewording (cosine distance ≈ 0.04) of an earlier one. */
const DUPLICATE_SHARE = 0.2;
const BATCH = 100;

/** Unit vectors of 384 dimensions as the stage meets them. */
interface Kind {
  label: string;
  vectors: (ctx: BenchContext, count: number, seed: number) => Float32Array | Promise<Float32Array>;
}
/** Uniformly random directions: the worst case for HNSW (no neighbourhood structure to exploit). */
const UNIFORM: Kind = { label: 'uniformly random 384-d vectors', vectors: (_, n, seed) => randomUnitVectors(n, DIMENSIONS, seed) };
/** Sentence embeddings have a low intrinsic dimension; the neighbour benchmarks use the same model of them. */
const SUBSPACE: Kind = { label: 'vectors in a random 16-d subspace (like sentence embeddings)', vectors: (_, n, seed) => subspaceUnitVectors(n, DIMENSIONS, 16, seed) };
/** What the stage sees in production: MiniLM embeddings of real English sentences (bench/lib/corpus.ts). */
const MINILM: Kind = { label: 'MiniLM embeddings of real English sentences', vectors: (ctx, n) => miniLmVectors(ctx, n) };

async function miniLmVectors(ctx: BenchContext, count: number): Promise<Float32Array> {
  const texts = englishSentences(count);
  ctx.progress(`dedupe: embedding ${count} sentences with MiniLM`);
  const out = new Float32Array(count * DIMENSIONS);
  (await embedWithMiniLm(texts)).forEach((v, i) => out.set(v, i * DIMENSIONS));
  return out;
}

/** Unit vectors with planted near-duplicates; `copyOf[i]` is the earlier record i rewords, or -1. */
async function dataset(ctx: BenchContext, kind: Kind, count: number): Promise<{ vectors: Float32Array; copyOf: Int32Array }> {
  const vectors = await kind.vectors(ctx, count, 5);
  const noise = randomUnitVectors(count, DIMENSIONS, 6);
  const copyOf = new Int32Array(count).fill(-1);
  let seed = 12345;
  const uniform = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 1; i < count; i++) {
    if (uniform() >= DUPLICATE_SHARE) continue;
    const source = Math.floor(uniform() * i);
    copyOf[i] = source;
    let norm = 0;
    for (let d = 0; d < DIMENSIONS; d++) {
      const v = vectors[source * DIMENSIONS + d]! + 0.3 * noise[i * DIMENSIONS + d]!;
      vectors[i * DIMENSIONS + d] = v;
      norm += v * v;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let d = 0; d < DIMENSIONS; d++) vectors[i * DIMENSIONS + d] = vectors[i * DIMENSIONS + d]! * inv;
  }
  return { vectors, copyOf };
}

/** The stage's processor on batches, as the runner calls it (no Kafka): which records it marks duplicate, and its rate. */
async function streaming(ctx: BenchContext, vectors: Float32Array, count: number, index: NeighborIndexConfig = DEFAULT_NEIGHBOR_INDEX): Promise<{ duplicate: Uint8Array; nearest: Float64Array; rate: number; delay: ReturnType<typeof monitorEventLoopDelay> }> {
  const records: InputRecord<Conversation>[] = Array.from({ length: count }, (_, i) => ({
    value: { ...makeConversation(i), embedding: Array.from(vectors.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS)), embedding_model: 'bench' },
    key: null, headers: {}, topic: 'bench', partition: 0, offset: String(i), timestamp: '0',
  }));
  const stage = new NearDuplicateFilter(nearDuplicate.config.parse({ index }));
  const stageCtx = { logger: ctx.logger, signal: new AbortController().signal, heartbeat: async () => undefined } satisfies StageContext;
  // How long other work in the process (heartbeats, other stages) waits for the event loop meanwhile.
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const t = performance.now();
  const duplicate = new Uint8Array(count);
  const nearest = new Float64Array(count).fill(Infinity);
  for (let start = 0; start < count; start += BATCH) {
    const outcomes = await stage.process(records.slice(start, start + BATCH), stageCtx);
    outcomes.forEach((o, j) => {
      if (o.kind !== 'emit') return;
      const c = o.records[0]!.value as Conversation;
      if (c.is_duplicate) duplicate[start + j] = 1;
      if (c.min_neighbor_distance !== null) nearest[start + j] = c.min_neighbor_distance;
    });
  }
  const rate = (count * 1000) / (performance.now() - t);
  delay.disable();
  await stage.close();
  return { duplicate, nearest, rate, delay };
}

/**
 * The exact cosine distance from each vector to its nearest earlier one (Infinity for the first), block by block:
 * a block's rows are searched among every row up to the block's end, asking for one more than the block holds,
 * so that the nearest earlier row is always among the answers.
 */
function exactNearestEarlier(vectors: Float32Array, count: number): Float64Array {
  const out = new Float64Array(count).fill(Infinity);
  for (let start = 0; start < count; start += BATCH) {
    const end = Math.min(count, start + BATCH);
    const k = Math.min(end, end - start + 1);
    // usearch's exactSearch reads a typed array from the start of its buffer: the queries are copied out.
    const m = exactSearch(vectors.subarray(0, end * DIMENSIONS), vectors.slice(start * DIMENSIONS, end * DIMENSIONS), DIMENSIONS, k, MetricKind.Cos, availableParallelism());
    if (!('counts' in m)) continue;
    for (let i = start; i < end; i++) {
      const r = i - start;
      for (let j = 0; j < Number(m.counts[r]); j++) {
        if (Number(m.keys[r * k + j]) < i) out[i] = Math.min(out[i]!, m.distances[r * k + j]!);
      }
    }
  }
  return out;
}

/** Share of records after the first whose nearest earlier neighbour the stage found: recall@1 against exact search. */
function recallAt1(found: Float64Array, exact: Float64Array): number {
  let hits = 0;
  for (let i = 1; i < found.length; i++) if (found[i]! <= exact[i]! + 1e-5) hits++;
  return hits / (found.length - 1);
}

/**
 * Magpie's offline pass: every vector against all others at once, exact, all cores. A record is a duplicate when
 * an earlier record lies within the threshold, the stage's rule, so the two can be compared.
 */
function exactBatchJob(vectors: Float32Array, count: number): { duplicate: Uint8Array; rate: number } {
  const t = performance.now();
  const exact = exactSearch(vectors, vectors, DIMENSIONS, 8, MetricKind.Cos, availableParallelism());
  const duplicate = new Uint8Array(count);
  if ('counts' in exact) {
    for (let i = 0; i < count; i++) {
      for (let j = 0; j < 8; j++) {
        const key = Number(exact.keys[i * 8 + j]);
        if (key < i && exact.distances[i * 8 + j]! <= DEFAULT_DUPLICATE_THRESHOLD) duplicate[i] = 1;
      }
    }
  }
  return { duplicate, rate: (count * 1000) / (performance.now() - t) };
}

/** Rounds of each side at sizes where a round takes seconds: the machine is shared, so medians of alternating rounds. */
const ROUNDS = 3;

interface Compared {
  measurements: Measurement[];
  delay: ReturnType<typeof monitorEventLoopDelay>;
  vectors: Float32Array;
  count: number;
}

/**
 * The stage with the default settings (and, with `recallFirst`, the former recall-first settings) against the
 * exact batch job on the same vectors, in alternating rounds; rates are medians.
 */
async function compare(ctx: BenchContext, kind: Kind, count: number, recallFirst: boolean): Promise<Compared> {
  const { vectors, copyOf } = await dataset(ctx, kind, count);
  const planted = copyOf.filter((c) => c >= 0).length;
  const rounds = count <= 10_000 ? ROUNDS : 1;
  const settings: [string, NeighborIndexConfig][] = [['default settings', DEFAULT_NEIGHBOR_INDEX]];
  if (recallFirst) settings.push(['recall-first settings (connectivity 32, expansion 128/256)', RECALL_FIRST_NEIGHBOR_INDEX]);
  const streams = settings.map(() => [] as Awaited<ReturnType<typeof streaming>>[]);
  const batches: ReturnType<typeof exactBatchJob>[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const [j, [, index]] of settings.entries()) streams[j]!.push(await streaming(ctx, vectors, count, index));
    batches.push(exactBatchJob(vectors, count));
  }
  const batchRate = median(batches.map((b) => b.rate));
  const batch = batches[0]!;
  const exactNearest = exactNearestEarlier(vectors, count);
  const caught = (flags: Uint8Array) => copyOf.reduce((n, c, i) => n + (c >= 0 && flags[i] ? 1 : 0), 0) / planted;
  const k = `${count / 1000}k`;
  const measurements = settings.map(([label, index], j) => {
    const stream = streams[j]![0]!;
    const rate = median(streams[j]!.map((s) => s.rate));
    const agree = stream.duplicate.reduce((n, f, i) => n + (f === batch.duplicate[i] ? 1 : 0), 0) / count;
    const recall = recallAt1(stream.nearest, exactNearest);
    ctx.progress(`dedupe ${k}, ${kind.label}, ${label}: stream ${rate.toFixed(0)} records/s (${streams[j]!.map((s) => s.rate.toFixed(0)).join(', ')}), batch ${batchRate.toFixed(0)} records/s (${batches.map((b) => b.rate.toFixed(0)).join(', ')}); planted duplicates caught ${caught(stream.duplicate).toFixed(3)} vs ${caught(batch.duplicate).toFixed(3)}; decisions agree ${agree.toFixed(4)}; recall@1 ${recall.toFixed(4)}`);
    return measurement('dedupe', `near-duplicate stage (streaming HNSW, ${label}), ${k} records, ${kind.label}`, rate, 'records/s', { name: `exact batch job (${availableParallelism()} threads)`, value: batchRate }, {
      records: count,
      rounds,
      plantedDuplicates: planted,
      caughtByStage: Number(caught(stream.duplicate).toFixed(4)),
      caughtByBatch: Number(caught(batch.duplicate).toFixed(4)),
      decisionsAgree: Number(agree.toFixed(4)),
      recallAt1: Number(recall.toFixed(4)),
      threshold: DEFAULT_DUPLICATE_THRESHOLD,
      index,
    });
  });
  return { measurements, delay: streams[0]![0]!.delay, vectors, count };
}

export const dedupeSuite: Suite = {
  name: 'dedupe',
  description: 'the same near-duplicate pass two ways: the streaming near-duplicate stage (HNSW, arrival order) vs a single-process exact batch job, at growing sizes',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    // The exact job's work grows with the square of the records, the stage's about linearly: the ratio depends on
    // the size, so it is measured at more than one, and on vectors with and without neighbourhood structure.
    const cases: [Kind, number][] = ctx.quick ? [[UNIFORM, 3_000]] : [[MINILM, 10_000], [UNIFORM, 10_000], [SUBSPACE, 30_000]];
    const out: Measurement[] = [];
    let first: Compared | undefined;
    for (const [kind, count] of cases) {
      const c = await compare(ctx, kind, count, first === undefined);
      out.push(...c.measurements);
      first ??= c;
    }

    // The same searches and inserts on the event loop, one record at a time (the stage before its worker thread).
    const { vectors, count } = first!;
    const inThreadDelay = monitorEventLoopDelay({ resolution: 5 });
    inThreadDelay.enable();
    const inThread = new NeighborIndex(DIMENSIONS);
    for (let start = 0; start < count; start += BATCH) {
      for (let i = start; i < Math.min(count, start + BATCH); i++) {
        const v = vectors.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS);
        inThread.nearestWithin(v, DEFAULT_DUPLICATE_THRESHOLD, 16);
        inThread.add(v);
      }
      await new Promise((r) => setImmediate(r));
    }
    inThreadDelay.disable();
    const p99 = (h: ReturnType<typeof monitorEventLoopDelay>) => h.percentile(99) / 1e6;
    ctx.progress(`dedupe ${count}: event-loop delay p99 ${p99(first!.delay).toFixed(1)} ms with the index in its worker vs ${p99(inThreadDelay).toFixed(1)} ms on the event loop`);
    out.push(
      measurement('dedupe', `event-loop delay p99 while the stage works, ${count / 1000}k records`, p99(first!.delay), 'ms', { name: 'the same HNSW work on the event loop', value: p99(inThreadDelay) }, {
        maxMs: Number((first!.delay.max / 1e6).toFixed(1)),
        onEventLoopMaxMs: Number((inThreadDelay.max / 1e6).toFixed(1)),
      }, 'lower'),
    );
    return out;
  },
};
