import { createRequire } from 'node:module';
import type { Index } from 'usearch';
import { z } from 'zod';

// The native index is loaded by the first NeighborIndex, not by every command that only reads a topology.
const require = createRequire(import.meta.url);
let usearch: typeof import('usearch') | undefined;

/**
 * HNSW settings. The defaults give exact top-k on every test set we measured (3,000-5,000 random unit
 * vectors of 64 and 384 dimensions, incremental inserts, the worst case for HNSW), where the library's own
 * defaults (16 links, expansion 64) missed the true nearest neighbour for 2-11% of the queries.
 */
export const neighborIndexConfigSchema = z
  .object({
    /** Links per node (HNSW M): more links, better recall, more memory (about 2·M·8 bytes a vector). */
    connectivity: z.number().int().min(4).max(256).default(32),
    /** Candidate list while inserting (efConstruction). */
    expansionAdd: z.number().int().min(8).max(4096).default(128),
    /** Candidate list while searching (ef): raise it to trade speed for recall. */
    expansionSearch: z.number().int().min(8).max(4096).default(256),
  })
  .strict();
export type NeighborIndexConfig = z.infer<typeof neighborIndexConfigSchema>;
export const DEFAULT_NEIGHBOR_INDEX: NeighborIndexConfig = { connectivity: 32, expansionAdd: 128, expansionSearch: 256 };

export interface Neighbor {
  /** Insertion number of the neighbour (0-based). */
  seq: number;
  /** Cosine distance, 1 - cos: 0 for the same direction, 2 for the opposite. */
  distance: number;
}

/**
 * Approximate nearest neighbours by cosine distance over float32 vectors (usearch HNSW). Vectors are
 * keyed by their insertion number, so replaying the same inserts in the same order rebuilds the same graph.
 */
export class NeighborIndex {
  private readonly index: Index;
  private count = 0;

  constructor(
    readonly dimensions: number,
    config: NeighborIndexConfig = DEFAULT_NEIGHBOR_INDEX,
  ) {
    usearch ??= require('usearch') as typeof import('usearch');
    this.index = new usearch.Index({
      dimensions,
      metric: usearch.MetricKind.Cos,
      quantization: usearch.ScalarKind.F32,
      connectivity: config.connectivity,
      expansion_add: config.expansionAdd,
      expansion_search: config.expansionSearch,
      multi: false,
    });
  }

  get size(): number {
    return this.count;
  }

  /** Adds a vector as number `size` and returns that number. */
  add(vector: Float32Array): number {
    const seq = this.count;
    // One thread: a single insert gains nothing from more, and the graph must not depend on scheduling.
    this.index.add(BigInt(seq), vector, 1);
    this.count++;
    return seq;
  }

  /** Up to `k` nearest vectors, nearest first. */
  search(vector: Float32Array, k: number): Neighbor[] {
    if (this.count === 0 || k <= 0) return [];
    const matches = this.index.search(vector, Math.min(k, this.count), 1);
    const out: Neighbor[] = [];
    for (let i = 0; i < matches.keys.length; i++) out.push({ seq: Number(matches.keys[i]), distance: matches.distances[i]! });
    return out;
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
}
