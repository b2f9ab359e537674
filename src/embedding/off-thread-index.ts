import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { NeighborIndexConfig } from './neighbor-index.js';

export type IndexOp =
  | { op: 'create'; dimensions: number; config: NeighborIndexConfig }
  | { op: 'load'; path: string; dimensions: number; config: NeighborIndexConfig }
  | { op: 'addMany'; vectors: Float32Array; parallel: boolean }
  | { op: 'decide'; vectors: Float32Array; add: Uint8Array; threshold: number; k: number }
  | { op: 'save'; path: string }
  | { op: 'drop' };
export type IndexRequest = IndexOp & { id: number };
export type IndexResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** Per query row: nearest earlier seq (-1: none) and its distance, how many lie within the threshold, and the seq it was added as (-1: not added). */
export interface Decisions {
  nearest: Int32Array;
  distance: Float32Array;
  within: Int32Array;
  seq: Int32Array;
}

/**
 * The built package runs the compiled worker. From the sources (tests, `npm run magpie`), tsx's loader hooks do
 * not reach worker threads on Node 20: the worker registers tsx's require hook itself.
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./index-worker.js', import.meta.url));
  const file = fileURLToPath(new URL('./index-worker.ts', import.meta.url));
  return new Worker(`require('tsx/cjs/api').register(); require(${JSON.stringify(file)});`, { eval: true });
}

/**
 * A NeighborIndex in a worker thread (see index-worker.ts). Calls queue in order; each resolves when the
 * worker has done it. Vectors handed in are transferred: the caller must not use them afterwards.
 */
export class OffThreadIndex {
  private readonly worker: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;
  /** Vectors in the index, as of the last call that changed it. */
  size = 0;
  dimensions: number | undefined;

  constructor(readonly config: NeighborIndexConfig) {
    this.worker = startWorker();
    this.worker.unref();
    this.worker.on('message', (res: IndexResponse) => {
      const p = this.pending.get(res.id);
      this.pending.delete(res.id);
      if (this.pending.size === 0) this.worker.unref();
      if (res.ok) p?.resolve(res.result);
      else p?.reject(new Error(`neighbour index: ${res.error}`));
    });
    const fail = (err: Error) => {
      this.failure = err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`neighbour index worker exited (code ${code})`)));
  }

  private call<T>(req: IndexOp, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      // An idle worker must not keep the process alive; one with work pending must.
      this.worker.ref();
      this.worker.postMessage({ ...req, id }, transfer);
    });
  }

  async create(dimensions: number): Promise<void> {
    await this.call({ op: 'create', dimensions, config: this.config });
    this.dimensions = dimensions;
    this.size = 0;
  }

  async load(path: string, dimensions: number): Promise<void> {
    this.size = await this.call<number>({ op: 'load', path, dimensions, config: this.config });
    this.dimensions = dimensions;
  }

  /** Adds rows as the next seqs (bulk restore): in order, or on all cores. */
  async addMany(vectors: Float32Array, parallel: boolean): Promise<void> {
    this.size = await this.call<number>({ op: 'addMany', vectors, parallel }, [vectors.buffer as ArrayBuffer]);
  }

  /** For each row in order: its nearest earlier vector and count within `threshold`, then added when `add[i]`. */
  async decide(vectors: Float32Array, add: Uint8Array, threshold: number, k: number): Promise<Decisions> {
    if (this.dimensions === undefined) await this.create(vectors.length / add.length);
    const d = await this.call<Decisions>({ op: 'decide', vectors, add, threshold, k }, [vectors.buffer as ArrayBuffer]);
    for (const s of d.seq) if (s >= 0) this.size = s + 1;
    return d;
  }

  async save(path: string): Promise<void> {
    await this.call({ op: 'save', path });
  }

  /** Forgets the index (a rebuild follows). */
  async drop(): Promise<void> {
    await this.call({ op: 'drop' });
    this.size = 0;
    this.dimensions = undefined;
  }

  async close(): Promise<void> {
    this.failure ??= new Error('neighbour index closed');
    await this.worker.terminate();
  }
}
