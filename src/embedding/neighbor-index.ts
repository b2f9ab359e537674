import { createRequire } from 'node:module';
import type { BatchMatches, Index } from 'usearch';
import { z } from 'zod';

// The native index is loaded by the first NeighborIndex, not by every command that only reads a topology.
const require = createRequire(import.meta.url);
let usearch: typeof import('usearch') | undefined;

/** How vectors are stored in the index: f16 halves the memory of f32, i8 quarters it, at some recall. */
export const QUANTIZATIONS = { f32: 'F32', f16: 'F16', i8: 'I8' } as const;
export type Quantization = keyof typeof QUANTIZATIONS;

/**
 * HNSW settings. The defaults are chosen on what the stage meets, sentence embeddings: on MiniLM embeddings
 * of 10,000 real English sentences, in arrival order, they find the true nearest earlier sentence for 99.7%
 * of them and make every duplicate decision exact search makes, at about twice the speed of the recall-first
 * settings (RECALL_FIRST_NEIGHBOR_INDEX, 99.98%; `npm run bench -- --only dedupe`). Uniformly random vectors,
 * which have no neighbourhood structure, are HNSW's worst case: there the defaults find the true nearest for
 * 87% when a fifth are planted near-copies (the recall-first settings 99%), and for 66% of fresh random queries
 * (`-- --only neighbors`). Raise the three for such data or for more recall.
 */
export const neighborIndexConfigSchema = z
  .object({
    /** Links per node (HNSW M): more links, better recall, more memory (about 2·M·8 bytes a vector). */
    connectivity: z.number().int().min(4).max(256).default(16),
    /** Candidate list while inserting (efConstruction). */
    expansionAdd: z.number().int().min(8).max(4096).default(64),
    /** Candidate list while searching (ef): raise it to trade speed for recall. */
    expansionSearch: z.number().int().min(8).max(4096).default(128),
    /** Vector storage: f32 (exact distances), f16 or i8 (smaller, for large indexes; recall in bench/). */
    quantization: z.enum(Object.keys(QUANTIZATIONS) as [Quantization, ...Quantization[]]).default('f32'),
  })
  .strict();
export type NeighborIndexConfig = z.infer<typeof neighborIndexConfigSchema>;
export const DEFAULT_NEIGHBOR_INDEX: NeighborIndexConfig = neighborIndexConfigSchema.parse({});
/** The former defaults: exact top-k on every random-vector test set measured, at about half the speed. */
export const RECALL_FIRST_NEIGHBOR_INDEX: NeighborIndexConfig = { connectivity: 32, expansionAdd: 128, expansionSearch: 256, quantization: 'f32' };

export interface Neighbor {
  /** Insertion number of the neighbour (0-based). */
  seq: number;
  /** Cosine distance, 1 - cos: 0 for the same direction, 2 for the opposite. */
  distance: number;
}

/**
 * Approximate nearest neighbours by cosine distance (usearch HNSW). Vectors are keyed by their insertion
 * number. Every call is synchronous: callers that share the event loop run it in a worker (IndexWorker).
 */
export class NeighborIndex {
  private readonly index: Index;
  private count = 0;

  constructor(
    readonly dimensions: number,
    readonly config: NeighborIndexConfig = DEFAULT_NEIGHBOR_INDEX,
  ) {
    usearch ??= require('usearch') as typeof import('usearch');
    this.index = new usearch.Index({
      dimensions,
      metric: usearch.MetricKind.Cos,
      quantization: usearch.ScalarKind[QUANTIZATIONS[config.quantization]],
      connectivity: config.connectivity,
      expansion_add: config.expansionAdd,
      expansion_search: config.expansionSearch,
      multi: false,
    });
  }

  /** An index saved by `save`, with the settings it was built with (usearch keeps only the graph's). */
  static load(path: string, dimensions: number, config: NeighborIndexConfig): NeighborIndex {
    const loaded = new NeighborIndex(dimensions, config);
    loaded.index.load(path);
    if (loaded.index.dimensions() !== dimensions) throw new Error(`${path} holds ${loaded.index.dimensions()}-dimensional vectors, expected ${dimensions}`);
    loaded.count = loaded.index.size();
    return loaded;
  }

  get size(): number {
    return this.count;
  }

  /** Adds a vector as number `size` and returns that number. */
  add(vector: Float32Array): number {
    const seq = this.count;
    // One vector is one task on one thread. When the index grows, 0 (all cores) has it reserve the
    // per-thread buffers that searches of many rows on all cores need; otherwise 1 spares starting threads.
    this.index.add(BigInt(seq), vector, seq + 1 >= this.index.capacity() ? 0 : 1);
    this.count++;
    return seq;
  }

  /**
   * Adds `vectors.length / dimensions` vectors (row after row) as numbers size, size+1, …: in order like `add`,
   * or concurrently on all cores (faster; the graph then depends on scheduling).
   */
  addMany(vectors: Float32Array, parallel = false): void {
    const n = vectors.length / this.dimensions;
    if (!parallel) {
      for (let i = 0; i < n; i++) this.add(vectors.subarray(i * this.dimensions, (i + 1) * this.dimensions));
      return;
    }
    if (n === 0) return;
    const keys = new BigUint64Array(n);
    for (let i = 0; i < n; i++) keys[i] = BigInt(this.count + i);
    this.index.add(keys, vectors, 0);
    this.count += n;
  }

  /** Up to `k` nearest vectors, nearest first; equally near ones in insertion order. */
  search(vector: Float32Array, k: number): Neighbor[] {
    if (this.count === 0 || k <= 0) return [];
    const matches = this.index.search(vector, Math.min(k, this.count), 1);
    return byDistanceThenSeq(matches.keys, matches.distances, 0, matches.keys.length);
  }

  /** `search` for each row of `vectors` (row after row), on `threads` threads (0: all cores). */
  searchMany(vectors: Float32Array, k: number, threads = 0): Neighbor[][] {
    const rows = vectors.length / this.dimensions;
    if (this.count === 0 || k <= 0) return Array.from({ length: rows }, () => []);
    const want = Math.min(k, this.count);
    if (rows === 1) return [this.search(vectors, want)];
    const m = this.index.search(vectors, want, threads) as unknown as BatchMatches;
    return Array.from({ length: rows }, (_, r) => byDistanceThenSeq(m.keys, m.distances, r * want, Number(m.counts[r])));
  }

  /**
   * The nearest vector and how many lie within `threshold` (inclusive), widening the search until the
   * farthest result found lies beyond the threshold or the whole index was asked for.
   */
  nearestWithin(vector: Float32Array, threshold: number, k: number): { nearest: Neighbor | undefined; within: number } {
    for (let want = Math.max(1, k); ; want *= 2) {
      const found = this.search(vector, want);
      const within = found.filter((n) => n.distance <= threshold).length;
      if (within < found.length || found.length >= this.count || found.length < Math.min(want, this.count)) {
        return { nearest: found[0], within };
      }
    }
  }

  /**
   * For each row in order: its nearest earlier vector and how many earlier ones lie within `threshold`, then
   * the row is added when `add[row]` (as number `size`). Earlier means in the index before the call or an
   * added row above it. The index is searched for all rows at once on every core, then the rows are added in
   * order; rows of the call are compared with each other in a scratch index of the same settings, so every
   * distance comes from the same kernel as a search of the whole index would give.
   */
  decideInOrder(vectors: Float32Array, add: Uint8Array, threshold: number, k: number): { nearest: Neighbor | undefined; within: number; seq: number | undefined }[] {
    const rows = add.length;
    const base = this.count;
    const row = (r: number) => vectors.subarray(r * this.dimensions, (r + 1) * this.dimensions);
    const fromIndex = this.searchMany(vectors, Math.max(1, k)).map((found, r) =>
      // All k within the threshold: there may be more of them, which nearestWithin widens to.
      found.length > 0 && found.length < this.count && found[found.length - 1]!.distance <= threshold
        ? this.nearestWithin(row(r), threshold, 2 * Math.max(1, k))
        : { nearest: found[0], within: found.filter((n) => n.distance <= threshold).length },
    );
    // Large enough a candidate list to visit every row of the scratch index: exact within the call.
    const scratch = new NeighborIndex(this.dimensions, { ...this.config, expansionSearch: Math.max(this.config.expansionSearch, rows) });
    const added: number[] = [];
    const out = [];
    for (let r = 0; r < rows; r++) {
      let { nearest, within } = fromIndex[r]!;
      for (const n of scratch.search(row(r), scratch.size)) {
        const c = { seq: base + n.seq, distance: n.distance };
        if (c.distance <= threshold) within++;
        if (!nearest || c.distance < nearest.distance || (c.distance === nearest.distance && c.seq < nearest.seq)) nearest = c;
      }
      let seq: number | undefined;
      if (add[r]) {
        seq = base + scratch.add(row(r));
        added.push(r);
      }
      out.push({ nearest, within, seq });
    }
    // One thread: concurrent inserts build a graph that depends on scheduling, and on clusters of
    // near-copies such a graph can miss one of them; arrival order alone must decide.
    for (const r of added) this.add(row(r));
    return out;
  }

  /** Writes the index in usearch's own format. */
  save(path: string): void {
    this.index.save(path);
  }
}

function byDistanceThenSeq(keys: BigUint64Array, distances: Float32Array, from: number, count: number): Neighbor[] {
  const out: Neighbor[] = [];
  for (let i = from; i < from + count; i++) out.push({ seq: Number(keys[i]), distance: distances[i]! });
  // Ties (exact copies) come back in graph order, which a rebuilt graph need not share: insertion order does.
  return out.sort((a, b) => a.distance - b.distance || a.seq - b.seq);
}
