import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { exactSearch, MetricKind } from 'usearch';
import { NeighborIndex } from '../../src/embedding/neighbor-index.js';
import { DEFAULT_DUPLICATE_THRESHOLD, NearDuplicateFilter, nearDuplicate } from '../../src/processors/near-duplicate.js';
import type { InputRecord, StageContext } from '../../src/processors/stage.js';
import type { Conversation } from '../../src/serde/records.generated.js';
import { makeConversation } from '../../test/support/records.js';
import { measurement, randomUnitVectors, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const DIMENSIONS = 384;
/** Share of records that are a light rewording (cosine distance ≈ 0.04) of an earlier one. */
const DUPLICATE_SHARE = 0.2;
const BATCH = 100;

/** Random unit vectors with planted near-duplicates; `copyOf[i]` is the earlier record i rewords, or -1. */
function dataset(count: number): { vectors: Float32Array; copyOf: Int32Array } {
  const vectors = randomUnitVectors(count, DIMENSIONS, 5);
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

export const dedupeSuite: Suite = {
  name: 'dedupe',
  description: 'the same near-duplicate pass two ways: the streaming near-duplicate stage (HNSW, arrival order) vs a single-process exact batch job',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const count = ctx.quick ? 3_000 : 10_000;
    const { vectors, copyOf } = dataset(count);
    const planted = copyOf.filter((c) => c >= 0).length;
    const records: InputRecord<Conversation>[] = Array.from({ length: count }, (_, i) => ({
      value: { ...makeConversation(i), embedding: Array.from(vectors.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS)), embedding_model: 'bench' },
      key: null, headers: {}, topic: 'bench', partition: 0, offset: String(i), timestamp: '0',
    }));

    // Streaming: the stage's processor on batches, as the runner would call it (no Kafka).
    const stage = new NearDuplicateFilter(nearDuplicate.config.parse({}));
    const stageCtx = { logger: ctx.logger, signal: new AbortController().signal, heartbeat: async () => undefined } satisfies StageContext;
    // How long other work in the process (heartbeats, other stages) waits for the event loop meanwhile.
    const stageDelay = monitorEventLoopDelay({ resolution: 5 });
    stageDelay.enable();
    let t = performance.now();
    const streamDuplicate = new Uint8Array(count);
    for (let start = 0; start < count; start += BATCH) {
      const outcomes = await stage.process(records.slice(start, start + BATCH), stageCtx);
      outcomes.forEach((o, j) => {
        if (o.kind === 'emit' && (o.records[0]!.value as Conversation).is_duplicate) streamDuplicate[start + j] = 1;
      });
    }
    const streamRate = (count * 1000) / (performance.now() - t);
    stageDelay.disable();
    await stage.close();

    // The same searches and inserts on the event loop, one record at a time (the stage before its worker thread).
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

    // Batch job: every vector against all others at once, exact, all cores (Magpie's offline pass). A record is a
    // duplicate when an earlier record lies within the threshold, the stage's rule, so the two can be compared.
    t = performance.now();
    const exact = exactSearch(vectors, vectors, DIMENSIONS, 8, MetricKind.Cos, availableParallelism());
    const batchDuplicate = new Uint8Array(count);
    if ('counts' in exact) {
      for (let i = 0; i < count; i++) {
        for (let j = 0; j < 8; j++) {
          const key = Number(exact.keys[i * 8 + j]);
          if (key < i && exact.distances[i * 8 + j]! <= DEFAULT_DUPLICATE_THRESHOLD) batchDuplicate[i] = 1;
        }
      }
    }
    const batchRate = (count * 1000) / (performance.now() - t);

    const caught = (flags: Uint8Array) => copyOf.reduce((n, c, i) => n + (c >= 0 && flags[i] ? 1 : 0), 0) / planted;
    const agree = streamDuplicate.reduce((n, f, i) => n + (f === batchDuplicate[i] ? 1 : 0), 0) / count;
    ctx.progress(`dedupe ${count}: event-loop delay p99 ${p99(stageDelay).toFixed(1)} ms with the index in its worker vs ${p99(inThreadDelay).toFixed(1)} ms on the event loop`);
    ctx.progress(`dedupe ${count}: stream ${streamRate.toFixed(0)} records/s, batch ${batchRate.toFixed(0)} records/s; planted duplicates caught ${caught(streamDuplicate).toFixed(3)} vs ${caught(batchDuplicate).toFixed(3)}; decisions agree ${agree.toFixed(4)}`);
    return [
      measurement('dedupe', `near-duplicate stage (streaming HNSW), ${count / 1000}k records`, streamRate, 'records/s', { name: `exact batch job (${availableParallelism()} threads)`, value: batchRate }, {
        records: count,
        plantedDuplicates: planted,
        caughtByStage: Number(caught(streamDuplicate).toFixed(4)),
        caughtByBatch: Number(caught(batchDuplicate).toFixed(4)),
        decisionsAgree: Number(agree.toFixed(4)),
        threshold: DEFAULT_DUPLICATE_THRESHOLD,
      }),
      measurement('dedupe', `event-loop delay p99 while the stage works, ${count / 1000}k records`, p99(stageDelay), 'ms', { name: 'the same HNSW work on the event loop', value: p99(inThreadDelay) }, {
        maxMs: Number((stageDelay.max / 1e6).toFixed(1)),
        onEventLoopMaxMs: Number((inThreadDelay.max / 1e6).toFixed(1)),
      }, 'lower'),
    ];
  },
};
