import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import avro from 'avsc';
import { pino } from 'pino';
import { DEFAULT_NEIGHBOR_INDEX, NeighborIndex, RECALL_FIRST_NEIGHBOR_INDEX, type NeighborIndexConfig } from '../../src/embedding/neighbor-index.js';
import { DEFAULT_DUPLICATE_THRESHOLD, nearDuplicate, NearDuplicateFilter } from '../../src/processors/near-duplicate.js';
import type { StageContext, StateRestorer } from '../../src/processors/stage.js';
import type { IndexEntry } from '../../src/serde/records.generated.js';
import { embedWithMiniLm } from '../lib/minilm.js';
import { measurement, rssAfterGc, subspaceUnitVectors, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const DIMENSIONS = 384;
const indexEntryType = avro.Type.forSchema(JSON.parse(readFileSync(new URL('../../schemas/index_entry.avsc', import.meta.url), 'utf8')) as avro.Schema);

/** A changelog of Avro-encoded entries in memory: the restore path minus the broker's fetches. */
class EncodedChangelog implements StateRestorer {
  constructor(readonly entries: Buffer[] = []) {}
  topicOf(): string {
    return 'bench-changelog';
  }
  async restore(_port: string, onRecord: (key: string | null, value: unknown, offset: bigint) => void | Promise<void>, from = 0n) {
    for (let i = Number(from); i < this.entries.length; i++) await onRecord(null, indexEntryType.fromBuffer(this.entries[i]!), BigInt(i));
    return { records: this.entries.length - Number(from), next: BigInt(Math.max(this.entries.length, Number(from))) };
  }
}

/** Changelog entries (seq `first`, …) for the rows of `vectors`, Avro-encoded as the stage writes them. */
function encodeEntries(vectors: Float32Array, first: number): Buffer[] {
  const embedding = new Array<number>(DIMENSIONS);
  const out: Buffer[] = [];
  for (let row = 0; row < vectors.length / DIMENSIONS; row++) {
    for (let d = 0; d < DIMENSIONS; d++) embedding[d] = vectors[row * DIMENSIONS + d]!;
    const seq = first + row;
    out.push(indexEntryType.toBuffer({ uuid: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`, seq, embedding } satisfies IndexEntry));
  }
  return out;
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

/** Seconds a step took, from the `ms` of the stage's own log line for it. */
function loggedSeconds(lines: Record<string, unknown>[], msg: string): number {
  const ms = lines.find((l) => l.msg === msg)?.ms;
  if (typeof ms !== 'number') throw new Error(`the stage did not log '${msg}' with its duration`);
  return ms / 1000;
}

/** Replay as it was before snapshots and the worker: decode, then one insert at a time on the event loop. Entries/s. */
function oneAtATimeRate(index: NeighborIndex, entries: Buffer[]): number {
  const t = performance.now();
  for (const buf of entries) index.add(Float32Array.from((indexEntryType.fromBuffer(buf) as IndexEntry).embedding));
  return (entries.length * 1000) / (performance.now() - t);
}

/**
 * Seconds to insert `count` entries one by one, from the rates measured on an empty index and on one of
 * `count` entries. An insert costs more as the graph grows, ever more slowly: at least the mean of the two
 * per-entry times for every entry, at most the second.
 */
function projectedSeconds(count: number, startRate: number, endRate: number): { atLeast: number; atMost: number } {
  return { atLeast: round((count * (1 / startRate + 1 / endRate)) / 2), atMost: round(count / endRate) };
}

async function restore(ctx: BenchContext): Promise<Measurement[]> {
  const count = Number(process.env.BENCH_RESTORE_ENTRIES ?? (ctx.quick ? 20_000 : 200_000));
  // A restore replays at most `snapshots.every` entries after the newest snapshot: the worst case.
  const tail = Math.min(Math.round(count / 20), nearDuplicate.config.parse({}).snapshots.every);
  // The one-at-a-time and in-order replays take most of an hour at a million entries: timed on this many, projected.
  const sample = Math.min(tail, ctx.quick ? 1_000 : 5_000);
  ctx.progress(`dedupe-state: encoding ${count} + ${tail} changelog entries`);
  let vectors: Float32Array | undefined = subspaceUnitVectors(count + tail, DIMENSIONS, 16, 3);
  const log = new EncodedChangelog(encodeEntries(vectors.subarray(0, count * DIMENSIONS), 0));
  const tailEntries = encodeEntries(vectors.subarray(count * DIMENSIONS), count);
  vectors = undefined;
  const dir = mkdtempSync(join(tmpdir(), 'magpie-bench-state-'));
  const stage = (cfg: Record<string, unknown>) => new NearDuplicateFilter(nearDuplicate.config.parse(cfg));
  try {
    // Full replay with inserts on all cores, which then saves the snapshot the next restore starts from.
    // The state's memory is measured on it, from a started, empty stage (the worker's own memory is not state).
    const full = stage({ snapshots: { dir, every: count }, parallelRestore: true });
    await full.init(loggingContext().ctx, new EncodedChangelog());
    const rss0 = rssAfterGc();
    const heap0 = process.memoryUsage().heapUsed;
    const f = await timedInit(full, log);
    const rssPerEntry = (rssAfterGc() - rss0) / count;
    const heapPerEntry = (process.memoryUsage().heapUsed - heap0) / count;
    await full.close();
    const fullSeconds = loggedSeconds(f.lines, 'near-duplicate index restored from the changelog');
    const saveSeconds = loggedSeconds(f.lines, 'index snapshot saved');
    ctx.progress(`dedupe-state: full replay of ${count} entries, inserts on all cores, in ${fullSeconds.toFixed(1)} s; snapshot saved in ${saveSeconds.toFixed(1)} s`);
    const snapshotDir = join(dir, 'bench-changelog');
    const snapshotBytes = dirBytes(snapshotDir);
    const indexFile = join(snapshotDir, readdirSync(snapshotDir).find((f) => f.endsWith('.usearch'))!);
    // The saved index is its in-memory layout (vectors + graph); RSS deltas also hold freed, not returned memory.
    const indexBytes = statSync(indexFile).size;

    // `tail` more entries written after the snapshot; the restore loads it and replays them in order.
    log.entries.push(...tailEntries);
    const fromSnapshot = stage({ snapshots: { dir, every: count * 10 } });
    const s = await timedInit(fromSnapshot, log);
    await fromSnapshot.close();
    if (!s.lines.some((l) => String(l.msg).includes('restored from a snapshot'))) throw new Error('the snapshot was not used');
    const loadSeconds = loggedSeconds(s.lines, 'index snapshot loaded');
    const tailSeconds = s.seconds - loadSeconds;
    ctx.progress(`dedupe-state: snapshot of ${count} loaded in ${loadSeconds.toFixed(1)} s + ${tail} tail entries in ${tailSeconds.toFixed(1)} s`);

    // The default full replay (in order, in the worker) from an empty index; at `count` entries its rate is the tail's.
    const inOrder = stage({ snapshots: { every: 0 } });
    await inOrder.init(loggingContext().ctx, new EncodedChangelog());
    const o = await timedInit(inOrder, new EncodedChangelog(log.entries.slice(0, sample)));
    await inOrder.close();
    const inOrderSeconds = projectedSeconds(count, sample / o.seconds, tail / tailSeconds);
    ctx.progress(`dedupe-state: full replay in order: ${(sample / o.seconds).toFixed(0)} entries/s from empty, ${(tail / tailSeconds).toFixed(0)} at ${count} (projected ${inOrderSeconds.atLeast.toFixed(0)}-${inOrderSeconds.atMost.toFixed(0)} s)`);

    // One at a time on the event loop, from empty and on the snapshot's index.
    const startRate = oneAtATimeRate(new NeighborIndex(DIMENSIONS), log.entries.slice(0, sample));
    const endRate = oneAtATimeRate(NeighborIndex.load(indexFile, DIMENSIONS, DEFAULT_NEIGHBOR_INDEX), tailEntries.slice(0, sample));
    const oneSeconds = projectedSeconds(count, startRate, endRate);
    ctx.progress(`dedupe-state: one-at-a-time replay: ${startRate.toFixed(0)} entries/s from empty, ${endRate.toFixed(0)} at ${count} (projected ${oneSeconds.atLeast.toFixed(0)}-${oneSeconds.atMost.toFixed(0)} s)`);

    const projection = `not run to the end: ${sample} inserts timed on an empty index and ${sample} on one of ${count}; ${count} inserts take at least ${count} × the mean of the two per-entry times, at most ${count} × the second`;
    const details = {
      entries: count,
      tailEntries: tail,
      data: 'unit vectors in a random 16-d subspace of 384-d, Avro-decoded as from the changelog (broker fetch not included)',
      snapshotPlusTailSeconds: round(s.seconds),
      snapshotLoadSeconds: round(loadSeconds),
      tailReplaySeconds: round(tailSeconds),
      fullReplayAllCoresSeconds: round(fullSeconds),
      fullReplayInOrderProjectedSeconds: inOrderSeconds,
      fullReplayInOrderEntriesPerSecond: { empty: Math.round(sample / o.seconds), [`at${count}`]: Math.round(tail / tailSeconds) },
      oneAtATimeProjectedSeconds: oneSeconds,
      oneAtATimeEntriesPerSecond: { empty: Math.round(startRate), [`at${count}`]: Math.round(endRate) },
      projection,
      snapshotSaveSeconds: round(saveSeconds),
      snapshotMb: Math.round(snapshotBytes / 2 ** 20),
      stateMbPer1MEntries: Math.round(((indexBytes / count + heapPerEntry) * 1e6) / 2 ** 20),
      indexMbPer1MEntries: Math.round(((indexBytes / count) * 1e6) / 2 ** 20),
      jsHeapMbPer1MEntries: Math.round((heapPerEntry * 1e6) / 2 ** 20),
      rssGrowthMbPer1MEntries: Math.round((rssPerEntry * 1e6) / 2 ** 20),
    };
    const k = `${count / 1000}k`;
    return [
      measurement('dedupe-state', `restore ${k} entries: snapshot + ${tail / 1000}k tail (measured)`, s.seconds, 's', { name: 'full replay, inserts on all cores (measured)', value: fullSeconds }, details, 'lower'),
      measurement('dedupe-state', `restore ${k} entries: full replay, inserts on all cores, parallelRestore (measured)`, fullSeconds, 's', { name: `one insert at a time on the event loop (projected, at least; details.projection)`, value: oneSeconds.atLeast }, details, 'lower'),
      measurement('dedupe-state', `restore ${k} entries: full replay in order, the default (projected, at least; details.projection)`, inOrderSeconds.atLeast, 's', { name: `one insert at a time on the event loop (projected, at least)`, value: oneSeconds.atLeast }, details, 'lower'),
      measurement('dedupe-state', 'state memory per 1M entries (index vectors + graph, uuids on the JS heap; f32)', details.stateMbPer1MEntries, 'MB', undefined, details, 'lower'),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const round = (seconds: number) => Number(seconds.toFixed(2));

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
  const count = ctx.quick ? 1_000 : 2_000;
  ctx.progress(`dedupe-state: embedding ${count} generated instructions with MiniLM`);
  const vectors = await embedWithMiniLm(instructions(count));
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
  // The default settings at each storage width, then the former recall-first settings for comparison.
  const settings: [string, NeighborIndexConfig][] = [
    ['f32', DEFAULT_NEIGHBOR_INDEX],
    ['f16', { ...DEFAULT_NEIGHBOR_INDEX, quantization: 'f16' }],
    ['i8', { ...DEFAULT_NEIGHBOR_INDEX, quantization: 'i8' }],
    ['f32, recall-first settings (connectivity 32, expansion 128/256)', RECALL_FIRST_NEIGHBOR_INDEX],
  ];
  for (const [label, config] of settings) {
    const quantization = config.quantization;
    const index = new NeighborIndex(DIMENSIONS, config);
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
    ctx.progress(`dedupe-state: ${label} recall@1 ${r.toFixed(4)}, duplicate decisions agree with exact ${(agree / (count - 1)).toFixed(4)}, ${(bytes / count).toFixed(0)} bytes/entry`);
    out.push(
      measurement('dedupe-state', `recall@1 vs exact, MiniLM embeddings of ${count} generated instructions, ${label}`, r, 'recall', undefined, {
        ...config,
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
