import { describe, expect, it } from 'vitest';
import { NeighborIndex, RECALL_FIRST_NEIGHBOR_INDEX } from '../../../src/embedding/neighbor-index.js';
import { randomUnitVector, seededRandom } from '../processors/harness.js';

function cosineDistance(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return 1 - dot;
}

/** Brute force over vectors[0..n): the k nearest (by distance, then seq) and how many lie within the threshold. */
function bruteForce(vectors: Float32Array[], n: number, query: Float32Array, k: number, threshold: number) {
  const all = vectors.slice(0, n).map((v, seq) => ({ seq, distance: cosineDistance(query, v) }));
  all.sort((a, b) => a.distance - b.distance || a.seq - b.seq);
  return { top: all.slice(0, k).map((n) => n.seq), within: all.filter((n) => n.distance <= threshold).length };
}

describe('NeighborIndex against brute force', () => {
  it('with the recall-first settings, finds the exact top-5 for every query while 3,000 random vectors are inserted one by one', { timeout: 60_000 }, () => {
    const dims = 64;
    const random = seededRandom(7);
    const vectors = Array.from({ length: 3000 }, () => randomUnitVector(random, dims));
    const index = new NeighborIndex(dims, RECALL_FIRST_NEIGHBOR_INDEX);
    let mismatches = 0;
    for (let i = 0; i < vectors.length; i++) {
      if (i > 0) {
        const got = index.search(vectors[i]!, 5).map((n) => n.seq);
        const want = bruteForce(vectors, i, vectors[i]!, 5, 0).top;
        if (got.join() !== want.join()) mismatches++;
      }
      expect(index.add(vectors[i]!)).toBe(i);
    }
    expect(mismatches).toBe(0);
    expect(index.size).toBe(3000);
  });

  it('with the default settings, counts every vector within the threshold, widening past k, on clustered near-duplicates', { timeout: 60_000 }, () => {
    const dims = 64;
    const random = seededRandom(11);
    const centres = Array.from({ length: 40 }, () => randomUnitVector(random, dims));
    // 2,000 vectors: each a small perturbation of one of 40 centres, so clusters hold ~50 near-duplicates.
    const vectors = Array.from({ length: 2000 }, () => {
      const c = centres[Math.floor(random() * centres.length)]!;
      const noise = randomUnitVector(random, dims);
      const v = c.map((x, i) => x + 0.15 * noise[i]!);
      const norm = Math.hypot(...v);
      return v.map((x) => x / norm);
    });
    const threshold = 0.02;
    const index = new NeighborIndex(dims);
    let countMismatches = 0;
    let nearestMismatches = 0;
    let maxWithin = 0;
    for (let i = 0; i < vectors.length; i++) {
      if (i > 0) {
        const got = index.nearestWithin(vectors[i]!, threshold, 4);
        const want = bruteForce(vectors, i, vectors[i]!, 1, threshold);
        if (got.within !== want.within) countMismatches++;
        maxWithin = Math.max(maxWithin, want.within);
        if (got.nearest!.seq !== want.top[0]) nearestMismatches++;
      }
      index.add(vectors[i]!);
    }
    expect(countMismatches).toBe(0);
    expect(nearestMismatches).toBe(0);
    expect(maxWithin).toBeGreaterThan(16); // the search had to widen from k = 4 several times
  });

  it('decides rows in order the same way whatever the batch size, as brute force does, ties to the earliest', { timeout: 60_000 }, () => {
    const dims = 32;
    const random = seededRandom(5);
    const centres = Array.from({ length: 30 }, () => randomUnitVector(random, dims));
    // Clusters of near-duplicates and exact copies; some rows are not added (replayed uuids).
    const vectors = Array.from({ length: 900 }, (_, i) => {
      const c = centres[Math.floor(random() * centres.length)]!;
      if (i % 9 === 0) return c;
      const noise = randomUnitVector(random, dims);
      const v = c.map((x, d) => x + 0.12 * noise[d]!);
      const norm = Math.hypot(...v);
      return v.map((x) => x / norm);
    });
    const add = vectors.map((_, i) => (i % 13 === 5 ? 0 : 1));
    const threshold = 0.02;
    const run = (batch: number) => {
      const index = new NeighborIndex(dims);
      const out: { nearest: number | undefined; distance: number | undefined; within: number; seq: number | undefined }[] = [];
      for (let start = 0; start < vectors.length; start += batch) {
        const rows = vectors.slice(start, start + batch);
        const flat = new Float32Array(rows.length * dims);
        rows.forEach((v, i) => flat.set(v, i * dims));
        const decided = index.decideInOrder(flat, Uint8Array.from(add.slice(start, start + batch)), threshold, 4);
        out.push(...decided.map((d) => ({ nearest: d.nearest?.seq, distance: d.nearest?.distance, within: d.within, seq: d.seq })));
      }
      return out;
    };
    const one = run(1);
    expect(run(7)).toEqual(one);
    expect(run(100)).toEqual(one);
    // Against brute force over the rows added before each row (seq = position among added rows).
    const addedVectors: Float32Array[] = [];
    let mismatches = 0;
    vectors.forEach((v, i) => {
      const want = bruteForce(addedVectors, addedVectors.length, v, 1, threshold);
      if (addedVectors.length > 0 && (one[i]!.nearest !== want.top[0] || one[i]!.within !== want.within)) mismatches++;
      if (add[i]) {
        expect(one[i]!.seq).toBe(addedVectors.length);
        addedVectors.push(v);
      }
    });
    expect(mismatches).toBe(0);
  });

  it('is empty-safe and reports cosine distances', () => {
    const index = new NeighborIndex(3);
    expect(index.search(new Float32Array([1, 0, 0]), 3)).toEqual([]);
    expect(index.nearestWithin(new Float32Array([1, 0, 0]), 0.1, 3)).toEqual({ nearest: undefined, within: 0 });
    index.add(new Float32Array([1, 0, 0]));
    index.add(new Float32Array([0, 1, 0]));
    const [a, b] = index.search(new Float32Array([1, 0, 0]), 5);
    expect(a!.seq).toBe(0);
    expect(a!.distance).toBeCloseTo(0, 6);
    expect(b!.seq).toBe(1);
    expect(b!.distance).toBeCloseTo(1, 6);
  });
});
