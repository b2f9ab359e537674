import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import avro from 'avsc';
import { pino } from 'pino';
import { NeighborIndex, type Quantization } from '../../src/embedding/neighbor-index.js';
import { createEmbedder, magpieCacheDir } from '../../src/embedding/transformers.js';
import { DEFAULT_DUPLICATE_THRESHOLD, nearDuplicate, NearDuplicateFilter } from '../../src/processors/near-duplicate.js';
import type { StageContext, StateRestorer } from '../../src/processors/stage.js';
import type { IndexEntry } from '../../src/serde/records.generated.js';
import { measurement, rssAfterGc, subspaceUnitVectors, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const DIMENSIONS = 384;
const indexEntryType = avro.Type.forSchema(JSON.parse(readFileSync(new URL('../../schemas/index_entry.avsc', import.meta.url), 'utf8')) as avro.Schema);

/** A changelog of Avro-encoded entries in memory: the restore path minus the broker's fetches. */
class EncodedChangelog implements StateRestorer {
  readonly entries: Buffer[] = [];
  topicOf(): string {
    return 'bench-changelog';
  }
  async restore(_port: string, onRecord: (key: string | null, value: unknown, offset: bigint) => void | Promise<void>, from = 0n) {
    for (let i = Number(from); i < this.entries.length; i++) await onRecord(null, indexEntryType.fromBuffer(this.entries[i]!), BigInt(i));
    return { records: this.entries.length - Number(from), next: BigInt(Math.max(this.entries.length, Number(from))) };
  }
}

function changelog(vectors: Float32Array, count: number): EncodedChangelog {
  const log = new EncodedChangelog();
  for (let i = 0; i < count; i++) {
    const entry: IndexEntry = { uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, seq: i, embedding: Array.from(vectors.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS)) };
    log.entries.push(indexEntryType.toBuffer(entry));
  }
  return log;
}

/** A stage context whose log lines are kept, for the timings the stage logs itself. */
function loggingContext(): { ctx: StageContext; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { ctx: { logger, signal: new AbortController().signal, heartbeat: async () => undefined }, lines };
}

async function timedInit(stage: NearDuplicateFilter, log: StateRestorer): Promise<{ seconds: number; lines: Record<string, unknown>[] }> {
  const { ctx, lines } = loggingContext();
  const t = performance.now();
  await stage.init(ctx, log);
  return { seconds: (performance.now() - t) / 1000, lines };
}

async function restore(ctx: BenchContext): Promise<Measurement[]> {
  const count = Number(process.env.BENCH_RESTORE_ENTRIES ?? (ctx.quick ? 20_000 : 200_000));
  const tail = Math.round(count / 20);
  ctx.progress(`dedupe-state: encoding ${count + tail} changelog entries`);
  const vectors = subspaceUnitVectors(count + tail, DIMENSIONS, 16, 3);
  const log = changelog(vectors, count);
  const dir = mkdtempSync(join(tmpdir(), 'magpie-bench-state-'));
  try {
    // Full replay, bulk adds on all cores; the memory the state takes is measured on it.
    const full = new NearDuplicateFilter(nearDuplicate.config.parse({ snapshots: { every: 0 }, parallelRestore: true }));
    // The worker thread's own memory is not state: measure from a started, empty stage.
    await full.init(loggingContext().ctx, new EncodedChangelog());
    const rss0 = rssAfterGc();
    const heap0 = process.memoryUsage().heapUsed;
    const f = await timedInit(full, log);
    const rssPerEntry = (rssAfterGc() - rss0) / count;
    const heapPerEntry = (process.memoryUsage().heapUsed - heap0) / count;
    await full.close();
    ctx.progress(`dedupe-state: full replay of ${count} entries, inserts on all cores, in ${f.seconds.toFixed(1)} s`);
    // The default replay: in order on one thread, in the worker, while the next chunk is decoded.
    const inOrder = new NearDuplicateFilter(nearDuplicate.config.parse({ snapshots: { every: 0 } }));
    const o = await timedInit(inOrder, log);
    await inOrder.close();
    ctx.progress(`dedupe-state: full replay of ${count} entries, in order, in ${o.seconds.toFixed(1)} s`);

    // A snapshot taken at `count` entries, then `tail` more entries written after it.
    const writer = new NearDuplicateFilter(nearDuplicate.config.parse({ snapshots: { dir, every: count }, parallelRestore: true }));
    const w = await timedInit(writer, log);
    await writer.close();
    const saveMs = Number(w.lines.find((l) => l.msg === 'index snapshot saved')?.ms ?? NaN);
    const snapshotBytes = dirBytes(join(dir, 'bench-changelog'));
    // The saved index is its in-memory layout (vectors + graph); RSS deltas also hold freed, not returned memory.
    const indexBytes = readdirSync(join(dir, 'bench-changelog')).filter((f) => f.endsWith('.usearch')).reduce((n, f) => n + statSync(join(dir, 'bench-changelog', f)).size, 0);
    for (const b of changelog(vectors.subarray(count * DIMENSIONS), tail).entries.map((buf, i) => {
      const e = indexEntryType.fromBuffer(buf) as IndexEntry;
      return indexEntryType.toBuffer({ ...e, seq: count + i, uuid: `00000000-0000-4000-9000-${String(count + i).padStart(12, '0')}` });
    })) log.entries.push(b);
    const fromSnapshot = new NearDuplicateFilter(nearDuplicate.config.parse({ snapshots: { dir, every: count * 10 } }));
    const s = await timedInit(fromSnapshot, log);
    await fromSnapshot.close();
    if (!s.lines.some((l) => String(l.msg).includes('restored from a snapshot'))) throw new Error('the snapshot was not used');
    ctx.progress(`dedupe-state: snapshot + ${tail} tail entries in ${s.seconds.toFixed(1)} s`);

    // Replay as it was: decode, then one insert at a time on one thread, for a time budget; projected to `count`.
    const budgetMs = (ctx.quick ? 20 : 90) * 1000;
    const one = new NeighborIndex(DIMENSIONS);
    const t = performance.now();
    let done = 0;
    while (done < count && performance.now() - t < budgetMs) {
      const e = indexEntryType.fromBuffer(log.entries[done]!) as IndexEntry;
      one.add(Float32Array.from(e.embedding));
      done++;
    }
    const oneRate = (done * 1000) / (performance.now() - t);
    // Inserts slow down as the graph grows: the rate at `done` entries flatters the projection.
    const oneSeconds = count / oneRate;
    ctx.progress(`dedupe-state: one-at-a-time replay ${oneRate.toFixed(0)} entries/s over the first ${done} (projected ${oneSeconds.toFixed(0)} s for ${count})`);

    const details = {
      entries: count,
      tailEntries: tail,
      data: 'unit vectors in a random 16-d subspace of 384-d, Avro-decoded as from the changelog (broker fetch not included)',
      fullReplayAllCoresSeconds: Number(f.seconds.toFixed(2)),
      fullReplayInOrderSeconds: Number(o.seconds.toFixed(2)),
      snapshotPlusTailSeconds: Number(s.seconds.toFixed(2)),
      snapshotSaveSeconds: Number((saveMs / 1000).toFixed(2)),
      snapshotMb: Math.round(snapshotBytes / 2 ** 20),
      oneAtATimeEntriesMeasured: done,
      oneAtATimeProjectedSeconds: Math.round(oneSeconds),
      stateMbPer1MEntries: Math.round(((indexBytes / count + heapPerEntry) * 1e6) / 2 ** 20),
      indexMbPer1MEntries: Math.round(((indexBytes / count) * 1e6) / 2 ** 20),
      jsHeapMbPer1MEntries: Math.round((heapPerEntry * 1e6) / 2 ** 20),
      rssGrowthMbPer1MEntries: Math.round((rssPerEntry * 1e6) / 2 ** 20),
    };
    return [
      measurement('dedupe-state', `restore ${count / 1000}k entries: snapshot + ${tail / 1000}k tail`, s.seconds, 's', { name: 'full replay, inserts on all cores', value: f.seconds }, details, 'lower'),
      measurement('dedupe-state', `restore ${count / 1000}k entries: full replay, inserts on all cores (parallelRestore)`, f.seconds, 's', { name: 'one insert at a time on the event loop (projected)', value: oneSeconds }, details, 'lower'),
      measurement('dedupe-state', `restore ${count / 1000}k entries: full replay in order (default)`, o.seconds, 's', { name: 'one insert at a time on the event loop (projected)', value: oneSeconds }, details, 'lower'),
      measurement('dedupe-state', 'state memory per 1M entries (index vectors + graph, uuids on the JS heap; f32)', details.stateMbPer1MEntries, 'MB', undefined, details, 'lower'),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

const TOPICS = ['python lists', 'french verbs', 'black holes', 'sourdough bread', 'tax returns', 'chess openings', 'sql joins', 'marathon training', 'photosynthesis', 'the stock market', 'guitar chords', 'climate change', 'roman history', 'machine learning', 'vegan recipes', 'job interviews', 'car maintenance', 'meditation', 'wedding speeches', 'home gardening', 'quantum computing', 'the french revolution', 'learning japanese', 'dog training', 'personal budgeting'];
const ASKS = ['Explain', 'Give me tips on', 'Write a short poem about', 'What is the history of', 'Summarize', 'What are common mistakes in', 'How do I get started with', 'Compare the main approaches to'];
const TAILS = ['', ' for a beginner', ' in detail', ' please', ' briefly', ' with examples', ' for a ten-year-old'];

/** Generated instructions: every ask × topic × tail once, in a seeded shuffled order, then some exact repeats. */
function instructions(count: number): string[] {
  let seed = 7;
  const uniform = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const all: string[] = [];
  for (const a of ASKS) for (const t of TOPICS) for (const tail of TAILS) all.push(`${a} ${t}${tail}.`);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  const out = all.slice(0, count);
  for (let i = out.length; i < count; i++) out.push(out[Math.floor(uniform() * out.length)]!);
  return out;
}

/** Recall@1 of the stage's index settings (f32, f16, i8) against exact search, on real MiniLM embeddings, in arrival order. */
async function recall(ctx: BenchContext): Promise<Measurement[]> {
  const folder = resolve(process.env.MAGPIE_EMBED_MODEL_DIR ?? join(magpieCacheDir(), 'models', 'all-MiniLM-L6-v2'));
  if (!existsSync(join(folder, 'onnx', 'model_quantized.onnx'))) throw new Error(`no model at ${folder}: run \`npm run fetch-models\` first`);
  const count = ctx.quick ? 1_000 : 2_000;
  const texts = instructions(count);
  const embedder = await createEmbedder({ model: 'sentence-transformers/all-MiniLM-L6-v2', localPath: folder, dtype: 'q8', pooling: 'mean', batchSize: 32 });
  ctx.progress(`dedupe-state: embedding ${count} generated instructions with MiniLM`);
  const vectors = await embedder.embed(texts);
  await embedder.close();
  const dot = (a: Float32Array, b: Float32Array) => {
    let s = 0;
    for (let d = 0; d < a.length; d++) s += a[d]! * b[d]!;
    return s;
  };
  // Exact nearest earlier neighbour of each instruction (seq, distance), in f32.
  const exact = vectors.map((v, i) => {
    let best = -1;
    let bestDistance = Infinity;
    for (let j = 0; j < i; j++) {
      const d = 1 - dot(v, vectors[j]!);
      if (d < bestDistance) [best, bestDistance] = [j, d];
    }
    return { seq: best, distance: bestDistance };
  });
  const out: Measurement[] = [];
  const f32Bytes: number[] = [];
  for (const quantization of ['f32', 'f16', 'i8'] as Quantization[]) {
    const index = new NeighborIndex(DIMENSIONS, { connectivity: 32, expansionAdd: 128, expansionSearch: 256, quantization });
    let hits = 0;
    let agree = 0;
    for (let i = 0; i < count; i++) {
      if (i > 0) {
        const { nearest } = index.nearestWithin(vectors[i]!, DEFAULT_DUPLICATE_THRESHOLD, 16);
        // Judged by the true distance of the neighbour found: quantized distances are approximations.
        const trueDistance = 1 - dot(vectors[i]!, vectors[nearest!.seq]!);
        if (trueDistance <= exact[i]!.distance + 1e-6) hits++;
        if ((nearest!.distance <= DEFAULT_DUPLICATE_THRESHOLD) === (exact[i]!.distance <= DEFAULT_DUPLICATE_THRESHOLD)) agree++;
      }
      index.add(vectors[i]!);
    }
    const dir = mkdtempSync(join(tmpdir(), 'magpie-bench-q-'));
    index.save(join(dir, 'i.usearch'));
    const bytes = statSync(join(dir, 'i.usearch')).size;
    rmSync(dir, { recursive: true, force: true });
    if (quantization === 'f32') f32Bytes.push(bytes);
    const r = hits / (count - 1);
    ctx.progress(`dedupe-state: ${quantization} recall@1 ${r.toFixed(4)}, duplicate decisions agree with exact ${(agree / (count - 1)).toFixed(4)}, ${(bytes / count).toFixed(0)} bytes/entry`);
    out.push(
      measurement('dedupe-state', `recall@1 vs exact, MiniLM embeddings of ${count} generated instructions, ${quantization}`, r, 'recall', undefined, {
        quantization,
        decisionsAgreeWithExact: Number((agree / (count - 1)).toFixed(4)),
        indexBytesPerEntry: Math.round(bytes / count),
        indexSizeVsF32: Number((bytes / f32Bytes[0]!).toFixed(3)),
        threshold: DEFAULT_DUPLICATE_THRESHOLD,
      }),
    );
  }
  return out;
}

export const dedupeStateSuite: Suite = {
  name: 'dedupe-state',
  description: 'near-duplicate state: restore from snapshot + tail vs full bulk replay vs one insert at a time; memory per 1M entries; recall@1 of f32/f16/i8 vs exact on MiniLM embeddings',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    return [...(await restore(ctx)), ...(await recall(ctx))];
  },
};
