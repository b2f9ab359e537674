import { EventEmitter } from 'node:events';
import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { StageMetrics } from '../core/metrics.js';
import type { Processor, StageContext, StateRestorer } from '../processors/stage.js';
import type { RecordSerde } from '../serde/serde.js';
import type { SchemaName } from '../serde/schemas.js';
import { AtLeastOnceCommitter, TransactionalCommitter, type Committer } from './committer.js';
import { headersToStrings, routeBatch, type RawRecord, type RouteTarget } from './route.js';
import { restoreTopic } from './restore.js';

export interface StageRunnerOptions {
  kafka: Kafka;
  serde: RecordSerde;
  logger: Logger;
  metrics: StageMetrics;
  groupId: string;
  input: string;
  target: RouteTarget;
  batchSize: number;
  concurrency: number;
  exactlyOnce: boolean;
  sessionTimeoutMs: number;
  /** Schema of each extra port, for restoring state from it. */
  portSchemas: Readonly<Record<string, SchemaName>>;
}

export interface BatchCommittedEvent {
  topic: string;
  partition: number;
  nextOffset: string;
  counts: { in: number; out: number; rejected: number; deadLettered: number };
}

/**
 * Owns consume → process → produce → commit for one processor stage: batching, heartbeats during slow work,
 * retries, dead-lettering, exactly-once commits and shutdown. Stages never touch kafkajs.
 * Events: 'committed' (BatchCommittedEvent), 'error' is not emitted; failures are logged and retried.
 */
export class StageRunner extends EventEmitter {
  private consumer: Consumer | undefined;
  private readonly committer: Committer;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private stopping: Promise<void> | undefined;
  private draining = false;
  private readonly inflight = new Set<Promise<unknown>>();
  /** Last offset handled (records and transaction markers) and high watermark, per input partition. */
  readonly positions = new Map<number, { lastOffset: bigint; highWatermark: bigint }>();

  constructor(
    private readonly processor: Processor<unknown, unknown>,
    private readonly options: StageRunnerOptions,
  ) {
    super();
    this.log = options.logger.child({ stage: options.target.name });
    this.committer = options.exactlyOnce
      ? new TransactionalCommitter(options.kafka, options.groupId, this.log)
      : new AtLeastOnceCommitter(options.kafka);
  }

  get input(): string {
    return this.options.input;
  }

  async start(): Promise<void> {
    const { kafka, groupId, input, concurrency, sessionTimeoutMs } = this.options;
    const restorer: StateRestorer = {
      restore: (port, onRecord) => {
        const topic = this.options.target.ports[port];
        const schema = this.options.portSchemas[port];
        if (!topic || !schema) throw new Error(`stage ${this.options.target.name} has no port '${port}' to restore from`);
        return restoreTopic(kafka, this.options.serde, topic, schema, onRecord, this.log);
      },
    };
    await this.processor.init?.(this.context(this.log, async () => undefined), restorer);
    const consumer = kafka.consumer({
      groupId,
      sessionTimeout: sessionTimeoutMs,
      rebalanceTimeout: Math.max(60_000, sessionTimeoutMs * 2),
      heartbeatInterval: Math.min(3_000, Math.floor(sessionTimeoutMs / 5)),
      readUncommitted: false,
      maxBytesPerPartition: 1_048_576,
      allowAutoTopicCreation: false,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => this.log.info({ assignment: e.payload.memberAssignment }, 'joined group'));
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      if (payload.topic === input) this.positions.set(payload.partition, { lastOffset: BigInt(payload.lastOffset), highWatermark: BigInt(payload.highWatermark) });
    });
    consumer.on(consumer.events.CRASH, (e) => this.log.error({ err: String(e.payload.error), restart: e.payload.restart }, 'consumer crashed'));
    await consumer.connect();
    await consumer.subscribe({ topics: [input], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: concurrency,
      eachBatch: (payload) => this.onBatch(payload),
    });
    this.log.info({ input, groupId, exactlyOnce: this.options.exactlyOnce }, 'stage started');
  }

  private context(log: Logger, heartbeat: () => Promise<void>, signal: AbortSignal = this.abort.signal): StageContext {
    return { logger: log, signal, heartbeat };
  }

  private async onBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const log = this.log.child({ topic: batch.topic, partition: batch.partition });
    const { batchSize, groupId } = this.options;
    for (let start = 0; start < batch.messages.length; start += batchSize) {
      if (!payload.isRunning() || payload.isStale() || this.draining) return;
      const chunk = batch.messages.slice(start, start + batchSize);
      const raws: RawRecord[] = chunk.map((m) => ({
        topic: batch.topic,
        partition: batch.partition,
        offset: m.offset,
        key: m.key ?? null,
        value: m.value ?? null,
        headers: headersToStrings(m.headers),
        timestamp: m.timestamp,
      }));
      // A chunk is abandoned (not committed) when the stage stops or loses the partition mid-way.
      const chunkAbort = new AbortController();
      const onStop = () => chunkAbort.abort(new Error('stage stopping'));
      this.abort.signal.addEventListener('abort', onStop, { once: true });
      const heartbeat = async () => {
        if (payload.isStale()) chunkAbort.abort(new Error('partition revoked'));
        await payload.heartbeat().catch((err: unknown) => log.debug({ err: errorMessage(err) }, 'heartbeat failed'));
      };
      const timer = setInterval(() => void heartbeat(), 2_000);
      const started = process.hrtime.bigint();
      let finished!: () => void;
      const tracked = new Promise<void>((resolve) => (finished = resolve));
      this.inflight.add(tracked);
      try {
        const routed = await routeBatch(raws, (records, ctx) => this.processor.process(records, ctx), this.options.serde, this.options.target, this.context(log, heartbeat, chunkAbort.signal));
        if (chunkAbort.signal.aborted || payload.isStale() || !payload.isRunning()) {
          log.info({ from: raws[0]!.offset }, 'chunk abandoned before commit; it will be consumed again');
          return;
        }
        const nextOffset = (BigInt(raws[raws.length - 1]!.offset) + 1n).toString();
        await this.committer.commit(
          { groupId, topic: batch.topic, partition: batch.partition, nextOffset, byTopic: routed.byTopic },
          (topic, partition, offset) => this.consumer!.commitOffsets([{ topic, partition, offset }]),
        );
        payload.resolveOffset(raws[raws.length - 1]!.offset);
        this.options.metrics.record(this.options.target.name, routed.counts);
        this.options.metrics.batchSeconds.observe({ stage: this.options.target.name }, Number(process.hrtime.bigint() - started) / 1e9);
        const event: BatchCommittedEvent = { topic: batch.topic, partition: batch.partition, nextOffset, counts: routed.counts };
        this.emit('committed', event);
      } catch (err) {
        if (chunkAbort.signal.aborted || this.abort.signal.aborted) {
          log.info({ from: raws[0]!.offset, reason: errorMessage(err) }, 'chunk abandoned; it will be consumed again');
          return;
        }
        // Not committed: kafkajs restarts the batch from the last resolved offset after a pause.
        this.options.metrics.retries.inc({ stage: this.options.target.name });
        log.error({ err: errorMessage(err), from: raws[0]!.offset }, 'chunk failed before commit; it will be retried');
        throw err;
      } finally {
        clearInterval(timer);
        this.abort.signal.removeEventListener('abort', onStop);
        this.inflight.delete(tracked);
        finished();
      }
      await payload.heartbeat().catch(() => undefined);
    }
  }

  /** True when every partition of the input, as of the given end offsets, has been handled by this runner. */
  caughtUp(ends: Map<number, { low: bigint; high: bigint }>): boolean {
    for (const [partition, { low, high }] of ends) {
      if (high <= low) continue;
      const pos = this.positions.get(partition);
      if (!pos || pos.lastOffset < high - 1n) return false;
    }
    return this.inflight.size === 0;
  }

  /**
   * Stops taking new chunks, lets chunks in flight finish and commit for up to `graceMs`, then abandons the
   * rest (never committed, so they are consumed again after a restart) and closes.
   */
  stop(graceMs = 10_000): Promise<void> {
    this.stopping ??= (async () => {
      this.draining = true;
      if (this.inflight.size > 0) {
        this.log.info({ chunks: this.inflight.size, graceMs }, 'waiting for chunks in flight');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
        clearTimeout(timer);
      }
      this.abort.abort(new Error('stage stopping'));
      await this.consumer?.disconnect().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'consumer disconnect failed'));
      await this.committer.close();
      await this.processor.close?.();
      this.log.info('stage stopped');
    })();
    return this.stopping;
  }
}
