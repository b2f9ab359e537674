import type { RawRecord, RoutedBatch } from './route.js';
import type { OutboundMessage } from './send-plan.js';

/** Chunks whose outputs go out in one commit: consecutive, in offset order. */
export interface CommitGroup {
  /** Offset of the first record of the first chunk. */
  first: bigint;
  /** Offset after the last record of the last chunk: the committed position once written. */
  next: bigint;
  byTopic: Map<string, OutboundMessage[]>;
  chunks: { first: bigint; next: bigint; records: number; counts: RoutedBatch['counts']; byStage: RoutedBatch['byStage']; startedAt: bigint; timestamps: number[] }[];
}

/** What became of a commit: written, already written (by this process before a lost answer, or by another), or overtaken. */
export type CommitResult = { kind: 'committed' } | { kind: 'already' } | { kind: 'reset'; offset: bigint };

export interface WindowHooks {
  /** Decodes, processes and encodes a chunk; retries on its own until it succeeds or the signal aborts. */
  route(raws: RawRecord[], signal: AbortSignal): Promise<RoutedBatch>;
  /** Writes a group's outputs and its input position; recovers from failures itself (see StageRunner). */
  commit(group: CommitGroup): Promise<CommitResult>;
  /** The window holds as much as it takes: stop fetching the partition (true) or fetch again (false). */
  backpressure(paused: boolean): void;
  /** Fetching must start again at this offset (after a reset). */
  seek(offset: bigint): void;
  committed(group: CommitGroup): void;
  failed(err: unknown): void;
}

/** Chunks a window holds in all (processing or finished and waiting to commit in order), per chunk it processes. */
export const HELD_PER_SLOT = 4;

/**
 * Chunks' worth of records a window buffers, per chunk it processes, before it pauses its partition. It resumes
 * the partition when the buffer falls below that, and what is left must last until kafkajs fetches the
 * partition again (up to the consumer's maxWaitTimeInMs, then the fetch itself): with one window's worth, a
 * fast stage's windows ran dry before every refetch. A fetch may bring up to maxBytesPerPartition on top.
 */
export const BUFFERED_PER_SLOT = 4;

interface Chunk {
  raws: RawRecord[];
  first: bigint;
  next: bigint;
  abort: AbortController;
  startedAt: bigint;
  result?: RoutedBatch;
}

/**
 * A sliding window over one input partition: up to `size` chunks are processed at once while the consumer
 * fetches ahead, and their outputs are committed strictly in offset order, the chunks that are ready together
 * in one commit. A chunk's outputs are kept until they are written, so a failed commit never runs inference
 * again. Records below the window's position (a re-delivery after a rejoin) are dropped: they are in flight or
 * committed already.
 */
export class PartitionWindow {
  private readonly chunks: Chunk[] = [];
  private buffer: RawRecord[] = [];
  private committing = false;
  private paused = false;
  private closed = false;
  /** Next offset the window takes from the consumer. */
  private expected: bigint;
  /** Last offset the consumer has delivered (control records included). */
  fetchedThrough: bigint;
  /** Next offset after what is committed. */
  committedNext: bigint;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly partition: number,
    committedNext: bigint,
    private readonly size: number,
    private readonly batchSize: number,
    private readonly hooks: WindowHooks,
  ) {
    this.expected = committedNext;
    this.committedNext = committedNext;
    this.fetchedThrough = committedNext - 1n;
  }

  /** Nothing buffered, in flight or waiting to commit. */
  get idle(): boolean {
    return this.buffer.length === 0 && this.chunks.length === 0;
  }

  get inFlight(): number {
    return this.chunks.length;
  }

  /** Takes records the consumer fetched; `lastOffset` is the batch's last offset, control records included. */
  offer(raws: RawRecord[], lastOffset: bigint): void {
    if (this.closed) return;
    for (const raw of raws) {
      const offset = BigInt(raw.offset);
      if (offset < this.expected) continue;
      this.buffer.push(raw);
      this.expected = offset + 1n;
    }
    if (lastOffset > this.fetchedThrough) this.fetchedThrough = lastOffset;
    if (lastOffset + 1n > this.expected) this.expected = lastOffset + 1n;
    this.pump();
  }

  /** Control records only (transaction markers): the position moves on. */
  skipTo(lastOffset: bigint): void {
    if (lastOffset > this.fetchedThrough) this.fetchedThrough = lastOffset;
    if (lastOffset + 1n > this.expected) this.expected = lastOffset + 1n;
  }

  /** Records fetched that no chunk has taken yet. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** Chunks whose processing has not finished (the rest wait for an older chunk to commit). */
  get working(): number {
    let n = 0;
    for (const c of this.chunks) if (!c.result) n++;
    return n;
  }

  private pump(): void {
    // `size` bounds the chunks being processed. Finished chunks queued behind a slower older one do not count
    // against it (a straggler would otherwise leave the server short of work: head-of-line blocking), but the
    // window holds at most HELD_PER_SLOT × size chunks in all, so a record that takes its whole timeout cannot
    // make it grow without bound.
    while (!this.closed && this.buffer.length > 0 && this.working < this.size && this.chunks.length < this.size * HELD_PER_SLOT) {
      this.start(this.buffer.splice(0, this.batchSize));
    }
    const full = this.buffer.length >= this.batchSize * this.size * BUFFERED_PER_SLOT;
    if (full !== this.paused) {
      this.paused = full;
      this.hooks.backpressure(full);
    }
    if (this.idle) this.wakeIdle();
  }

  private start(raws: RawRecord[]): void {
    const chunk: Chunk = {
      raws,
      first: BigInt(raws[0]!.offset),
      next: BigInt(raws[raws.length - 1]!.offset) + 1n,
      abort: new AbortController(),
      startedAt: process.hrtime.bigint(),
    };
    this.chunks.push(chunk);
    this.hooks.route(raws, chunk.abort.signal).then(
      (result) => {
        chunk.result = result;
        this.drainCommits();
        this.pump();
      },
      (err: unknown) => {
        if (!chunk.abort.signal.aborted) this.hooks.failed(err);
      },
    );
  }

  /** Commits every chunk at the front of the window that is ready, as one group; one commit at a time. */
  private drainCommits(): void {
    if (this.committing || this.closed) return;
    let ready = 0;
    while (ready < this.chunks.length && this.chunks[ready]!.result) ready++;
    if (ready === 0) return;
    const chunks = this.chunks.slice(0, ready);
    const byTopic = new Map<string, OutboundMessage[]>();
    for (const c of chunks) {
      for (const [topic, messages] of c.result!.byTopic) {
        const list = byTopic.get(topic);
        if (list) list.push(...messages);
        else byTopic.set(topic, [...messages]);
      }
    }
    const group: CommitGroup = {
      first: chunks[0]!.first,
      next: chunks[chunks.length - 1]!.next,
      byTopic,
      chunks: chunks.map((c) => ({ first: c.first, next: c.next, records: c.raws.length, counts: c.result!.counts, byStage: c.result!.byStage, startedAt: c.startedAt, timestamps: c.raws.map((r) => Number(r.timestamp)) })),
    };
    this.committing = true;
    this.hooks.commit(group).then(
      (result) => {
        this.committing = false;
        if (this.closed) return;
        if (result.kind === 'reset') {
          this.reset(result.offset);
          return;
        }
        this.chunks.splice(0, chunks.length);
        this.committedNext = group.next;
        if (result.kind === 'committed') this.hooks.committed(group);
        this.pump();
        this.drainCommits();
      },
      (err: unknown) => {
        this.committing = false;
        if (!this.closed) this.hooks.failed(err);
      },
    );
  }

  /** Drops everything in the window and starts again from `offset` (another owner moved the partition on). */
  private reset(offset: bigint): void {
    for (const c of this.chunks) c.abort.abort(new Error('partition position moved; chunk dropped'));
    this.chunks.length = 0;
    this.buffer = [];
    this.expected = offset;
    this.committedNext = offset;
    this.fetchedThrough = offset - 1n;
    this.hooks.seek(offset);
    this.pump();
  }

  /** Resolves once the window is idle (everything in it committed or dropped). */
  whenIdle(): Promise<void> {
    if (this.idle || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Takes no more records; buffered records that no chunk has started are dropped (never committed). */
  drain(): void {
    this.buffer = [];
    if (this.idle) this.wakeIdle();
  }

  /** Abandons the window: chunks in flight are cancelled and never committed; they are consumed again. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.chunks) c.abort.abort(new Error(reason));
    this.chunks.length = 0;
    this.buffer = [];
    this.wakeIdle();
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
