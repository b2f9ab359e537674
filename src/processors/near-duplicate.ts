import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { NeighborIndex, neighborIndexConfigSchema, DEFAULT_NEIGHBOR_INDEX } from '../embedding/neighbor-index.js';
import type { Conversation, IndexEntry } from '../serde/records.generated.js';
import { dead, defineProcessor, emit, type InputRecord, type Outcome, type Processor, type StageContext, type StateRestorer } from './stage.js';

/** Measured with all-MiniLM-L6-v2 (int8): light paraphrases ≤ 0.10, different questions on one topic ≥ 0.13. */
export const DEFAULT_DUPLICATE_THRESHOLD = 0.12;

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
  })
  .strict();
type Config = z.infer<typeof config>;

interface Decision {
  minNeighborDistance: number | null;
  minSimilarUuid: string | null;
  repeatCount: number;
  isDuplicate: boolean;
  /** The changelog entry written with the decision, if the record was added to the index. */
  entry: IndexEntry | undefined;
}

/**
 * Magpie's min_neighbor_distance / repeat_count, in arrival order: each instruction is compared with every
 * earlier one (never later ones), then added to the index. The first record has no earlier neighbour:
 * min_neighbor_distance and min_similar_uuid are null, repeat_count 0, is_duplicate false (filter on
 * is_duplicate, or allow missing distances). A uuid already in the index is a replayed upstream record: it is
 * reported as a duplicate of its first copy and not added again, so changelog keys stay unique and
 * compaction never drops an entry (restore order = insertion order).
 */
export class NearDuplicateFilter implements Processor<Conversation, Conversation | IndexEntry> {
  private index: NeighborIndex | undefined;
  private readonly uuids: string[] = [];
  private readonly seqOfUuid = new Map<string, number>();
  /**
   * The runner re-runs a batch whose commit failed, and re-runs records one by one after a failed batch; the
   * index already holds them then. A record seen at the same input position gets its first decision again.
   */
  private readonly recent = new Map<string, { position: string; decision: Decision }>();

  constructor(private readonly config: Config) {}

  async init(ctx: StageContext, state: StateRestorer): Promise<void> {
    const restored = await state.restore('changelog', (_key, value) => this.restoreEntry(value as IndexEntry));
    ctx.logger.info({ restored, size: this.uuids.length }, 'near-duplicate index restored from changelog');
  }

  private restoreEntry(entry: IndexEntry): void {
    const seq = Number(entry.seq);
    if (this.seqOfUuid.has(entry.uuid)) return;
    if (seq !== this.uuids.length) {
      throw new ConfigError(`changelog entry for ${entry.uuid} has seq ${seq}, expected ${this.uuids.length}: the changelog topic is not this stage's, or was truncated; delete it and reprocess the input`, { uuid: entry.uuid, seq });
    }
    this.insert(entry.uuid, Float32Array.from(entry.embedding));
  }

  private insert(uuid: string, vector: Float32Array): number {
    this.index ??= new NeighborIndex(vector.length, this.config.index);
    const seq = this.index.add(vector);
    this.uuids.push(uuid);
    this.seqOfUuid.set(uuid, seq);
    return seq;
  }

  async process(batch: InputRecord<Conversation>[]): Promise<Outcome<Conversation | IndexEntry>[]> {
    return batch.map((record) => this.processOne(record));
  }

  private processOne(record: InputRecord<Conversation>): Outcome<Conversation | IndexEntry> {
    const value = record.value;
    const position = `${record.topic}/${record.partition}/${record.offset}`;
    const seen = this.recent.get(value.uuid);
    if (seen && seen.position === position) return this.outcome(record, seen.decision);

    const embedding = value.embedding;
    if (!embedding || embedding.length === 0) {
      return dead('NO_EMBEDDING', `record ${value.uuid} has no embedding: put an embed stage before near-duplicate`);
    }
    if (this.index && embedding.length !== this.index.dimensions) {
      return dead('EMBEDDING_DIMENSIONS', `record ${value.uuid} has a ${embedding.length}-dimensional embedding, the index holds ${this.index.dimensions}-dimensional ones (model ${value.embedding_model ?? 'unknown'}): use one embedding model per index`);
    }
    const vector = Float32Array.from(embedding);
    const decision = this.decide(value.uuid, vector);
    this.recent.set(value.uuid, { position, decision });
    if (this.recent.size > this.config.replayWindow) this.recent.delete(this.recent.keys().next().value!);
    return this.outcome(record, decision);
  }

  private decide(uuid: string, vector: Float32Array): Decision {
    const { nearest, within } = this.index?.nearestWithin(vector, this.config.duplicateThreshold, this.config.k) ?? { nearest: undefined, within: 0 };
    // float32 arithmetic puts an identical vector at about ±1e-7.
    const distance = nearest === undefined ? null : Math.max(0, nearest.distance);
    const decision: Decision = {
      minNeighborDistance: distance,
      minSimilarUuid: nearest === undefined ? null : this.uuids[nearest.seq]!,
      repeatCount: within,
      isDuplicate: distance !== null && distance <= this.config.duplicateThreshold,
      entry: undefined,
    };
    if (!this.seqOfUuid.has(uuid)) {
      const seq = this.insert(uuid, vector);
      decision.entry = { uuid, seq, embedding: Array.from(vector) };
    }
    return decision;
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
    return d.entry
      ? emit<Conversation | IndexEntry>({ value: out, key: record.key }, { port: 'changelog', key: d.entry.uuid, value: d.entry })
      : emit<Conversation | IndexEntry>({ value: out, key: record.key });
  }
}

export const nearDuplicate = defineProcessor({
  type: 'near-duplicate',
  description: 'Finds each instruction\'s nearest earlier instruction by embedding (HNSW): sets min_neighbor_distance, min_similar_uuid, repeat_count and is_duplicate. State: the index, rebuilt from the changelog port.',
  config,
  inputSchema: 'magpie.Conversation',
  outputSchema: 'magpie.Conversation',
  extraPorts: { changelog: { schema: 'magpie.IndexEntry', compacted: true } },
  create: (cfg) => new NearDuplicateFilter(cfg),
});
