import { z } from 'zod';
import { ConfigError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { IndexSnapshots, type ChangelogAnchor } from '../embedding/index-snapshot.js';
import { neighborIndexConfigSchema, DEFAULT_NEIGHBOR_INDEX } from '../embedding/neighbor-index.js';
import { OffThreadIndex } from '../embedding/off-thread-index.js';
import type { Conversation, IndexEntry } from '../serde/records.generated.js';
import { dead, defineProcessor, emit, type InputRecord, type Outcome, type Processor, type StageContext, type StateRestorer } from './stage.js';

/** Measured with all-MiniLM-L6-v2 (int8): light paraphrases ≤ 0.10, different questions on one topic ≥ 0.13. */
export const DEFAULT_DUPLICATE_THRESHOLD = 0.12;

/** Changelog entries handed to the index at once during a restore. */
const RESTORE_CHUNK = 8192;

const snapshotsSchema = z
  .object({
    /**
     * Where index snapshots are kept, one directory per changelog topic. A machine without one (a fresh
     * machine, a new container) rebuilds the index from the whole changelog and then saves one.
     */
    dir: z.string().min(1).default('.magpie/state'),
    /**
     * Entries added between snapshots; 0: no snapshots, every restore replays the whole changelog. A restore
     * replays at most about this many entries after the snapshot, in order: the tail bounds its time (10,000
     * took 31-37 s at a million entries on 2 shared cores), while saving one took 3-9 s at that size.
     */
    every: z.number().int().min(0).default(10_000),
    /** Snapshots kept; older ones are deleted. */
    keep: z.number().int().min(1).default(2),
  })
  .strict();

const config = z
  .object({
    /** Cosine distance at or below which an instruction counts as a repeat of an earlier one. */
    duplicateThreshold: z.number().min(0).max(2).default(DEFAULT_DUPLICATE_THRESHOLD),
    /** Neighbours fetched per search; widened automatically while all of them are repeats. */
    k: z.number().int().min(1).max(1024).default(16),
    /** Keep `embedding` on the output record (for export); dropped by default, it is 1.5 KB of floats. */
    keepEmbedding: z.boolean().default(false),
    index: neighborIndexConfigSchema.default(DEFAULT_NEIGHBOR_INDEX),
    /** Re-deliveries of uncommitted records (same uuid and input offset) answered from memory: how many to remember. */
    replayWindow: z.number().int().min(1).default(100_000),
    snapshots: snapshotsSchema.default({ dir: '.magpie/state', every: 10_000, keep: 2 }),
    /**
     * Replay the changelog (when there is no snapshot) with inserts on all cores. Off by default: in order on
     * one thread inserts as the stage does, while a graph built concurrently can miss a member of a cluster
     * of near-copies, so a repeat_count after such a restore may differ by one from an uninterrupted run's.
     */
    parallelRestore: z.boolean().default(false),
  })
  .strict();
type Config = z.infer<typeof config>;

interface Decision {
  minNeighborDistance: number | null;
  minSimilarUuid: string | null;
  repeatCount: number;
  isDuplicate: boolean;
  /** Seq the record was added to the index as (its changelog entry is rebuilt from the record), if it was. */
  seq: number | undefined;
}

/** The index holds entries the changelog contradicts (or a snapshot the changelog does not confirm). */
class StateDiverged extends Error {}

/**
 * Magpie's min_neighbor_distance / repeat_count, in arrival order: each instruction is compared with every
 * earlier one (never later ones), then added to the index. The first record has no earlier neighbour:
 * min_neighbor_distance and min_similar_uuid are null, repeat_count 0, is_duplicate false (filter on
 * is_duplicate, or allow missing distances). A uuid already in the index is a replayed upstream record: it is
 * reported as a duplicate of its first copy and not added again, so changelog keys stay unique and
 * compaction never drops an entry (restore order = insertion order).
 *
 * State: the index (in a worker thread), its changelog, and snapshots of it. The changelog is the truth: the
 * index always equals its entries 0..n-1, plus at most the entries of chunks not committed yet (which the
 * runner re-delivers, and `recent` answers with the same decisions). Whenever the input partition is
 * (re)assigned, after the runner fenced every earlier writer, the index catches up with what others
 * committed; if it holds anything the changelog contradicts it is rebuilt.
 */
export class NearDuplicateFilter implements Processor<Conversation, Conversation | IndexEntry> {
  private readonly index: OffThreadIndex;
  private uuids: string[] = [];
  private seqOfUuid = new Map<string, number>();
  /**
   * The runner re-runs a batch whose commit failed, and re-runs records one by one after a failed batch; the
   * index already holds them then. A record seen at the same input position gets its first decision again.
   */
  private readonly recent = new Map<string, { position: string; decision: Decision }>();
  /** Where the next changelog read starts: every entry below it has been read and matches the index. */
  private changelogNext = 0n;
  /** The last changelog entry read, so known to be committed. */
  private anchor: ChangelogAnchor | undefined;
  private snapshots: IndexSnapshots | undefined;
  private state: StateRestorer | undefined;
  /** Index size at which the next snapshot is due. */
  private snapshotAt = 0;

  constructor(private readonly config: Config) {
    this.index = new OffThreadIndex(config.index);
  }

  /** Loads the index ahead of the first assignment (a warm standby); onAssigned catches it up. */
  async init(ctx: StageContext, state: StateRestorer): Promise<void> {
    this.state = state;
    if (this.config.snapshots.every > 0) this.snapshots = new IndexSnapshots(this.config.snapshots.dir, state.topicOf('changelog'), this.config.snapshots.keep, ctx.logger);
    await this.rebuild(ctx.logger);
  }

  onAssigned(partition: number, state: StateRestorer, ctx: StageContext): Promise<void> {
    const run = this.queue.then(() => this.catchUpOnAssignment(partition, state, ctx));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async catchUpOnAssignment(partition: number, state: StateRestorer, ctx: StageContext): Promise<void> {
    // A long catch-up must not cost the group membership it is for.
    const beat = setInterval(() => void ctx.heartbeat().catch(() => undefined), 2_000);
    try {
      const before = this.uuids.length;
      try {
        await this.catchUp(state);
      } catch (err) {
        if (!(err instanceof StateDiverged)) throw err;
        ctx.logger.warn({ partition, reason: err.message }, 'index differs from the changelog (another instance wrote it meanwhile); rebuilding it');
        this.recent.clear();
        await this.rebuild(ctx.logger);
      }
      ctx.logger.info({ partition, size: this.uuids.length, added: this.uuids.length - before }, 'near-duplicate index caught up with the changelog');
    } finally {
      clearInterval(beat);
    }
  }

  private async reset(): Promise<void> {
    await this.index.drop();
    this.uuids = [];
    this.seqOfUuid = new Map();
    this.changelogNext = 0n;
    this.anchor = undefined;
  }

  /** The index afresh: the newest snapshot the changelog confirms plus the changelog after it, else the whole changelog. */
  private async rebuild(logger: Logger): Promise<void> {
    const state = this.state!;
    const started = Date.now();
    await this.reset();
    for await (const snapshot of this.snapshots?.loadNewestFirst(this.index) ?? []) {
      // Counted before the changelog tail is appended to the same list.
      const fromSnapshot = snapshot.uuids.length;
      this.uuids = snapshot.uuids;
      snapshot.uuids.forEach((uuid, seq) => this.seqOfUuid.set(uuid, seq));
      try {
        await this.catchUp(state, snapshot.anchor);
        this.snapshotAt = this.uuids.length + this.config.snapshots.every;
        logger.info({ size: this.uuids.length, fromSnapshot, fromChangelog: this.uuids.length - fromSnapshot, ms: Date.now() - started }, 'near-duplicate index restored from a snapshot and the changelog after it');
        return;
      } catch (err) {
        if (!(err instanceof StateDiverged)) throw err;
        logger.warn({ dir: this.snapshots!.dir, reason: err.message }, 'index snapshot does not match the changelog; trying an older one, else replaying the whole changelog');
        await this.reset();
      }
    }
    try {
      await this.catchUp(state);
    } catch (err) {
      if (!(err instanceof StateDiverged)) throw err;
      throw new ConfigError(`cannot restore state from ${state.topicOf('changelog')}: ${err.message}: the changelog topic is not this stage's, or was truncated; delete it and reprocess the input`);
    }
    logger.info({ size: this.uuids.length, ms: Date.now() - started }, 'near-duplicate index restored from the changelog');
    if (this.snapshots && this.uuids.length >= this.config.snapshots.every) await this.snapshot(logger);
    else this.snapshotAt = this.uuids.length + this.config.snapshots.every;
  }

  /**
   * Reads the changelog from where the last read ended (or from a snapshot's anchor, which must be the first
   * entry read) to its end: entries the index has must match it, later ones are added in bulk.
   */
  private async catchUp(state: StateRestorer, snapshotAnchor?: ChangelogAnchor): Promise<void> {
    let anchorSeen = snapshotAnchor === undefined;
    let pending: Float32Array | undefined;
    let pendingRows = 0;
    // One chunk is added in the worker while the next is decoded here.
    let adding: Promise<void> = Promise.resolve();
    const flush = async () => {
      if (pendingRows === 0) return;
      await adding;
      if (this.index.dimensions === undefined) await this.index.create(pending!.length / RESTORE_CHUNK);
      adding = this.index.addMany(pending!.subarray(0, pendingRows * this.index.dimensions!).slice(), this.config.parallelRestore);
      // Awaited by the next flush or at the end; a read that fails first must not leave it unhandled.
      adding.catch(() => undefined);
      pendingRows = 0;
    };
    const { next } = await state.restore(
      'changelog',
      async (_key, value, offset) => {
        const entry = value as IndexEntry;
        const seq = Number(entry.seq);
        if (!anchorSeen) {
          const a = snapshotAnchor!;
          if (offset !== a.offset || entry.uuid !== a.uuid || seq !== a.seq) throw new StateDiverged(`the snapshot was taken at changelog offset ${a.offset} (entry ${a.seq}, ${a.uuid}); the changelog has entry ${seq} (${entry.uuid}) at ${offset}`);
          anchorSeen = true;
        }
        if (seq < this.uuids.length) {
          if (this.uuids[seq] !== entry.uuid) throw new StateDiverged(`changelog entry ${seq} is ${entry.uuid}, the index has ${this.uuids[seq]} there`);
        } else {
          if (seq !== this.uuids.length || this.seqOfUuid.has(entry.uuid)) throw new StateDiverged(`changelog entry for ${entry.uuid} has seq ${seq}, expected ${this.uuids.length}`);
          const dimensions = this.index.dimensions ?? (pending ? pending.length / RESTORE_CHUNK : entry.embedding.length);
          if (entry.embedding.length !== dimensions) throw new StateDiverged(`changelog entry ${seq} has ${entry.embedding.length} dimensions, the index ${dimensions}`);
          pending ??= new Float32Array(RESTORE_CHUNK * dimensions);
          pending.set(entry.embedding, pendingRows * dimensions);
          pendingRows++;
          this.uuids.push(entry.uuid);
          this.seqOfUuid.set(entry.uuid, seq);
          if (pendingRows === RESTORE_CHUNK) await flush();
        }
        this.anchor = { offset, seq, uuid: entry.uuid };
      },
      snapshotAnchor?.offset ?? this.changelogNext,
    );
    await flush();
    await adding;
    if (!anchorSeen) throw new StateDiverged(`the changelog ends before offset ${snapshotAnchor!.offset}, where the snapshot was taken: the topic was recreated or truncated`);
    const confirmed = (this.anchor?.seq ?? -1) + 1;
    if (snapshotAnchor && confirmed < this.uuids.length) throw new StateDiverged(`the snapshot holds ${this.uuids.length} entries, the changelog only ${confirmed}`);
    this.changelogNext = next;
  }

  /**
   * Saves a snapshot anchored at the newest changelog entry. Entries after it (chunks not committed yet) are
   * in it too: a restore uses it only once the changelog holds every one of them, which it does as soon as
   * they are committed, or processed again in the same order by the next owner.
   */
  private async snapshot(logger: Logger): Promise<void> {
    const state = this.state!;
    try {
      await this.catchUp(state);
    } catch (err) {
      if (!(err instanceof StateDiverged)) throw err;
      // Another instance has taken the partition over: this one's commits fail and it catches up when assigned again.
      logger.warn({ reason: err.message }, 'index snapshot skipped: the changelog has moved on without this instance');
      this.snapshotAt = this.uuids.length + Math.ceil(this.config.snapshots.every / 10);
      return;
    }
    if (!this.anchor) {
      // Nothing committed yet: look again a little later.
      this.snapshotAt = this.uuids.length + Math.ceil(this.config.snapshots.every / 10);
      return;
    }
    this.snapshotAt = this.uuids.length + this.config.snapshots.every;
    // A snapshot only speeds restores up: failing to write one (disk full) must not stop the stage.
    await this.snapshots!.save(this.index, this.uuids, this.anchor).catch((err: unknown) => logger.warn({ dir: this.snapshots!.dir, err: errorMessage(err) }, 'index snapshot not saved'));
  }

  /** Batches in the order process() was called: a runner may hand over the next chunk before this one is done. */
  private queue: Promise<unknown> = Promise.resolve();

  process(batch: InputRecord<Conversation>[], ctx: StageContext): Promise<Outcome<Conversation | IndexEntry>[]> {
    const run = this.queue.then(() => this.processInOrder(batch, ctx));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async processInOrder(batch: InputRecord<Conversation>[], ctx: StageContext): Promise<Outcome<Conversation | IndexEntry>[]> {
    if (this.snapshots && this.state && this.uuids.length >= this.snapshotAt) await this.snapshot(ctx.logger);
    const out: Outcome<Conversation | IndexEntry>[] = new Array(batch.length);
    const todo: { i: number; record: InputRecord<Conversation>; add: boolean }[] = [];
    const addedHere = new Set<string>();
    let dimensions = this.index.dimensions;
    batch.forEach((record, i) => {
      const value = record.value;
      const seen = this.recent.get(value.uuid);
      if (seen && seen.position === positionOf(record)) return void (out[i] = this.outcome(record, seen.decision));
      const embedding = value.embedding;
      if (!embedding || embedding.length === 0) {
        return void (out[i] = dead('NO_EMBEDDING', `record ${value.uuid} has no embedding: put an embed stage before near-duplicate`));
      }
      dimensions ??= embedding.length;
      if (embedding.length !== dimensions) {
        return void (out[i] = dead('EMBEDDING_DIMENSIONS', `record ${value.uuid} has a ${embedding.length}-dimensional embedding, the index holds ${dimensions}-dimensional ones (model ${value.embedding_model ?? 'unknown'}): use one embedding model per index`));
      }
      const add = !this.seqOfUuid.has(value.uuid) && !addedHere.has(value.uuid);
      if (add) addedHere.add(value.uuid);
      todo.push({ i, record, add });
    });
    if (todo.length === 0) return out;

    const vectors = new Float32Array(todo.length * dimensions!);
    todo.forEach((t, j) => vectors.set(t.record.value.embedding!, j * dimensions!));
    const found = await this.index.decide(vectors, Uint8Array.from(todo, (t) => (t.add ? 1 : 0)), this.config.duplicateThreshold, this.config.k);
    todo.forEach(({ i, record }, j) => {
      const seq = found.seq[j]! >= 0 ? found.seq[j]! : undefined;
      if (seq !== undefined) {
        this.uuids.push(record.value.uuid);
        this.seqOfUuid.set(record.value.uuid, seq);
      }
      // float32 arithmetic puts an identical vector at about ±1e-7.
      const distance = found.nearest[j]! < 0 ? null : Math.max(0, found.distance[j]!);
      const decision: Decision = {
        minNeighborDistance: distance,
        minSimilarUuid: distance === null ? null : this.uuids[found.nearest[j]!]!,
        repeatCount: found.within[j]!,
        isDuplicate: distance !== null && distance <= this.config.duplicateThreshold,
        seq,
      };
      this.recent.set(record.value.uuid, { position: positionOf(record), decision });
      if (this.recent.size > this.config.replayWindow) this.recent.delete(this.recent.keys().next().value!);
      out[i] = this.outcome(record, decision);
    });
    return out;
  }

  private outcome(record: InputRecord<Conversation>, d: Decision): Outcome<Conversation | IndexEntry> {
    const out: Conversation = {
      ...record.value,
      min_neighbor_distance: d.minNeighborDistance,
      min_similar_uuid: d.minSimilarUuid,
      repeat_count: d.repeatCount,
      is_duplicate: d.isDuplicate,
      embedding: this.config.keepEmbedding ? record.value.embedding : null,
    };
    if (d.seq === undefined) return emit<Conversation | IndexEntry>({ value: out, key: record.key });
    const entry: IndexEntry = { uuid: record.value.uuid, seq: d.seq, embedding: record.value.embedding! };
    return emit<Conversation | IndexEntry>({ value: out, key: record.key }, { port: 'changelog', key: entry.uuid, value: entry });
  }

  async close(): Promise<void> {
    await this.index.close();
  }
}

function positionOf(record: InputRecord<unknown>): string {
  return `${record.topic}/${record.partition}/${record.offset}`;
}

export const nearDuplicate = defineProcessor({
  type: 'near-duplicate',
  description: 'Finds each instruction\'s nearest earlier instruction by embedding (HNSW): sets min_neighbor_distance, min_similar_uuid, repeat_count and is_duplicate. State: the index, rebuilt from the changelog port (and local snapshots).',
  config,
  inputSchema: 'magpie.Conversation',
  outputSchema: 'magpie.Conversation',
  extraPorts: { changelog: { schema: 'magpie.IndexEntry', compacted: true } },
  singlePartitionInput: true,
  create: (cfg) => new NearDuplicateFilter(cfg),
});
