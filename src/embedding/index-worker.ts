/**
 * The thread that owns a NeighborIndex for OffThreadIndex: HNSW inserts, searches, saves and loads run here,
 * so the event loop of the process (other stages, heartbeats) never waits on them.
 */
import { parentPort } from 'node:worker_threads';
import { NeighborIndex } from './neighbor-index.js';
import type { IndexRequest, IndexResponse, Decisions } from './off-thread-index.js';

let index: NeighborIndex | undefined;

function decide(vectors: Float32Array, add: Uint8Array, threshold: number, k: number): Decisions {
  if (!index) throw new Error('no index: create or load one first');
  const n = add.length;
  const out: Decisions = { nearest: new Int32Array(n).fill(-1), distance: new Float32Array(n), within: new Int32Array(n), seq: new Int32Array(n).fill(-1) };
  index.decideInOrder(vectors, add, threshold, k).forEach((d, i) => {
    if (d.nearest) {
      out.nearest[i] = d.nearest.seq;
      out.distance[i] = d.nearest.distance;
    }
    out.within[i] = d.within;
    if (d.seq !== undefined) out.seq[i] = d.seq;
  });
  return out;
}

function handle(req: IndexRequest): { result: unknown; transfer: ArrayBuffer[] } {
  switch (req.op) {
    case 'create':
      index = new NeighborIndex(req.dimensions, req.config);
      return { result: 0, transfer: [] };
    case 'load':
      index = NeighborIndex.load(req.path, req.dimensions, req.config);
      return { result: index.size, transfer: [] };
    case 'addMany':
      if (!index) throw new Error('no index: create or load one first');
      index.addMany(req.vectors, req.parallel);
      return { result: index.size, transfer: [] };
    case 'decide': {
      const d = decide(req.vectors, req.add, req.threshold, req.k);
      return { result: d, transfer: [d.nearest.buffer, d.distance.buffer, d.within.buffer, d.seq.buffer] as ArrayBuffer[] };
    }
    case 'save':
      if (!index) throw new Error('no index to save');
      index.save(req.path);
      return { result: index.size, transfer: [] };
    case 'drop':
      index = undefined;
      return { result: 0, transfer: [] };
  }
}

parentPort!.on('message', (req: IndexRequest) => {
  let response: IndexResponse;
  let transfer: ArrayBuffer[] = [];
  try {
    const done = handle(req);
    response = { id: req.id, ok: true, result: done.result };
    transfer = done.transfer;
  } catch (err) {
    response = { id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort!.postMessage(response, transfer);
});
