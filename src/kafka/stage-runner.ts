import { EventEmitter, setMaxListeners } from 'node:events';
import type { Admin, Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { CircuitBreaker, type CircuitBreakerOptions, type CircuitStateChange } from '../core/circuit-breaker.js';
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
  /** When batches keep failing with retryable errors, consumption pauses and a probe retries after a cool-down. */
  circuitBreaker?: CircuitBreakerOptions;
}

export const DEFAULT_CIRCUIT_BREAKER: CircuitBreakerOptions = { failureThreshold: 3, coolDownMs: 5_000, maxCoolDownMs: 60_000 };

/**
 * kafkajs stops a consumer for good (no restart) when eachBatch throws an error it deems non-retriable, such as
 * a fenced producer's: an uncommitted chunk is always worth another try, after a rejoin if need be.
 */
function retriable(err: unknown): Error {
  return Object.assign(new Error(`chunk not committed: ${errorMessage(err)}`), { retriable: true });
}

/** Heartbeat errors that mean this member no longer owns its partitions (the group moved on without it). */
const MEMBERSHIP_LOST = new Set(['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'FENCED_INSTANCE_ID']);

export interface BatchCommittedEvent {
  topic: string;
  partition: number;
  nextOffset: string;
  counts: { in: number; out: number; rejected: number; deadLettered: number };
}

/**
 * Owns consume → process → produce → commit for one processor stage: batching, heartbeats during slow work,
 * retries, a circuit breaker, dead-lettering, exactly-once commits and shutdown. Stages never touch kafkajs.
 * Events: 'committed' (BatchCommittedEvent), 'circuit' (CircuitStateChange); 'error' is not emitted: failures
 * are logged and retried.
 *
 * Exactly-once across owners (kafkajs has no KIP-447): before the first chunk of a partition after each
 * assignment, the runner starts a new transactional producer for it (fencing any previous owner, a zombie
 * included, and completing its open transaction), lets the processor catch its state up (onAssigned), and
 * only then reads the group's committed offset; records
 * below it, already committed by the previous owner after kafkajs fetched, are skipped.
 */
export class StageRunner extends EventEmitter {
  private consumer: Consumer | undefined;
  private admin: Promise<Admin> | undefined;
  private readonly committer: Committer;
  private readonly breaker: CircuitBreaker;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private stopping: Promise<void> | undefined;
  private draining = false;
  /**
   * The heartbeat error saying this member must join the group again (a rebalance began, or the group dropped
   * it). No chunk starts meanwhile; onBatch throws it, and kafkajs rejoins at once instead of fetching on.
   */
  private rejoin: Error | undefined;
  /** Committed offset read after fencing, per input partition, since the last assignment. */
  private readonly fencedIn = new Map<number, bigint>();
  /** `partition:lastOffset` of batches left part-way, so their end does not count as handled. */
  private readonly abandoned = new Set<string>();
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
    this.breaker = new CircuitBreaker(options.circuitBreaker ?? DEFAULT_CIRCUIT_BREAKER);
    this.breaker.on('state', (change: CircuitStateChange) => this.onCircuit(change));
  }

  get input(): string {
    return this.options.input;
  }

  /** Reads the stage's changelog ports, for init and for catching up after each fence. */
  private readonly restorer: StateRestorer = {
    topicOf: (port) => {
      const topic = this.options.target.ports[port];
      if (!topic) throw new Error(`stage ${this.options.target.name} has no port '${port}'`);
      return topic;
    },
    restore: async (port, onRecord, from) => {
      const topic = this.options.target.ports[port];
      const schema = this.options.portSchemas[port];
      if (!topic || !schema) throw new Error(`stage ${this.options.target.name} has no port '${port}' to restore from`);
      return restoreTopic(this.options.kafka, this.options.serde, topic, schema, onRecord, this.log, from);
    },
  };

  async start(): Promise<void> {
    const { kafka, groupId, input, concurrency, sessionTimeoutMs } = this.options;
    await this.processor.init?.(this.context(this.log, async () => undefined), this.restorer);
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
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      // A new assignment: every partition is fenced in again before its first chunk.
      this.fencedIn.clear();
      this.rejoin = undefined;
      this.log.info({ assignment: e.payload.memberAssignment }, 'joined group');
    });
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      if (payload.topic !== input || this.abandoned.delete(`${payload.partition}:${payload.lastOffset}`)) return;
      this.positions.set(payload.partition, { lastOffset: BigInt(payload.lastOffset), highWatermark: BigInt(payload.highWatermark) });
    });
    consumer.on(consumer.events.CRASH, (e) => {
      this.log.error({ err: String(e.payload.error), restart: e.payload.restart }, 'consumer crashed');
      // kafkajs will not restart this consumer: an idle process would look healthy, so say it is not.
      if (!e.payload.restart && !this.stopping) this.emit('fatal', e.payload.error);
    });
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

  private onCircuit(change: CircuitStateChange): void {
    const topics = [{ topic: this.options.input }];
    if (change.state === 'open') {
      this.log.warn({ failures: change.failures, coolDownMs: change.coolDownMs }, 'circuit open: batches keep failing; consumption paused until a probe succeeds');
      this.consumer?.pause(topics);
    } else if (change.state === 'half-open') {
      this.log.info('circuit half-open: one batch probes');
    } else {
      this.log.info('circuit closed: consumption resumed');
      this.consumer?.resume(topics);
    }
    this.emit('circuit', change);
  }

  /**
   * Fences any previous owner of the partition (a new transactional producer for it), then reads the group's
   * committed offset: records below it were committed by that owner and must not be processed again.
   */
  private async fenceIn(topic: string, partition: number, ctx: StageContext): Promise<bigint> {
    await this.committer.fence(topic, partition);
    // State catches up only now: nothing the previous owner commits can be missed any more.
    await this.processor.onAssigned?.(partition, this.restorer, ctx);
    this.admin ??= (async () => {
      const admin = this.options.kafka.admin();
      await admin.connect();
      return admin;
    })().catch((err: unknown) => {
      this.admin = undefined;
      throw err;
    });
    const [offsets] = await (await this.admin).fetchOffsets({ groupId: this.options.groupId, topics: [topic] });
    const committed = BigInt(offsets?.partitions.find((p) => p.partition === partition)?.offset ?? '-1');
    this.fencedIn.set(partition, committed);
    return committed;
  }

  /** Ends a batch left part-way: by rejoining the group first when that is why; its end then does not count as handled. */
  private leaveBatch(key: string): void {
    if (this.rejoin) throw this.rejoin;
    this.abandoned.add(key);
  }

  private async onBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const log = this.log.child({ topic: batch.topic, partition: batch.partition });
    const { batchSize, groupId } = this.options;
    const batchKey = `${batch.partition}:${batch.lastOffset()}`;
    if (this.rejoin || !payload.isRunning() || this.draining) return this.leaveBatch(batchKey);
    let messages = batch.messages;
    if (this.options.exactlyOnce) {
      const committed =
        this.fencedIn.get(batch.partition) ??
        (await this.fenceIn(batch.topic, batch.partition, this.context(log, () => payload.heartbeat())).catch((err: unknown) => {
          log.warn({ err: errorMessage(err) }, 'cannot take over the partition yet; retrying');
          throw retriable(err);
        }));
      const first = messages.findIndex((m) => BigInt(m.offset) >= committed);
      if (first !== 0 && messages.length > 0) {
        const skipped = first === -1 ? messages : messages.slice(0, first);
        log.info({ from: skipped[0]!.offset, to: skipped[skipped.length - 1]!.offset, committed: committed.toString() }, 'skipping records the previous owner of the partition committed');
        payload.resolveOffset(skipped[skipped.length - 1]!.offset);
        messages = first === -1 ? [] : messages.slice(first);
      }
    }
    // Heartbeats tell this member when the group rebalances (finish the chunk, start no other) and when it
    // has been dropped from the group (its partitions belong to another member: abandon the chunk).
    const heartbeat = async (chunkAbort?: AbortController) => {
      try {
        await payload.heartbeat();
      } catch (err) {
        const type = (err as { type?: string }).type ?? '';
        if (MEMBERSHIP_LOST.has(type) || type === 'REBALANCE_IN_PROGRESS') this.rejoin ??= err as Error;
        if (MEMBERSHIP_LOST.has(type)) chunkAbort?.abort(new Error(`this member left the group (${type}); another owns the partition now`));
        // A chunk waiting for the circuit to close would hold the rebalance up for nothing.
        else if (type === 'REBALANCE_IN_PROGRESS' && this.breaker.state !== 'closed') chunkAbort?.abort(new Error('group rebalancing while the circuit is open'));
        log.debug({ err: errorMessage(err), type }, 'heartbeat failed');
      }
    };
    for (let start = 0; start < messages.length; start += batchSize) {
      if (this.rejoin || !payload.isRunning() || payload.isStale() || this.draining) return this.leaveBatch(batchKey);
      const chunk = messages.slice(start, start + batchSize);
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
      // Every request of the chunk listens on this signal; hundreds in flight are expected, not a leak.
      setMaxListeners(0, chunkAbort.signal);
      const onStop = () => chunkAbort.abort(new Error('stage stopping'));
      this.abort.signal.addEventListener('abort', onStop, { once: true });
      const timer = setInterval(() => void heartbeat(chunkAbort), 2_000);
      const started = process.hrtime.bigint();
      let finished!: () => void;
      const tracked = new Promise<void>((resolve) => (finished = resolve));
      this.inflight.add(tracked);
      try {
        const routed = await routeBatch(
          raws,
          (records, ctx) => this.processor.process(records, ctx),
          this.options.serde,
          this.options.target,
          this.context(log, () => heartbeat(chunkAbort), chunkAbort.signal),
          this.breaker,
        );
        if (chunkAbort.signal.aborted || payload.isStale() || !payload.isRunning()) {
          log.info({ from: raws[0]!.offset, reason: errorMessage(chunkAbort.signal.reason) }, 'chunk abandoned before commit; it will be consumed again');
          return this.leaveBatch(batchKey);
        }
        const nextOffset = (BigInt(raws[raws.length - 1]!.offset) + 1n).toString();
        try {
          await this.committer.commit(
            { groupId, topic: batch.topic, partition: batch.partition, nextOffset, byTopic: routed.byTopic },
            (topic, partition, offset) => this.consumer!.commitOffsets([{ topic, partition, offset }]),
          );
        } catch (err) {
          // The producer is gone (fenced, or in an unknown state): fence in afresh and re-read the offset first.
          this.fencedIn.delete(batch.partition);
          throw err;
        }
        payload.resolveOffset(raws[raws.length - 1]!.offset);
        this.options.metrics.record(this.options.target.name, routed.counts);
        this.options.metrics.batchSeconds.observe({ stage: this.options.target.name }, Number(process.hrtime.bigint() - started) / 1e9);
        const event: BatchCommittedEvent = { topic: batch.topic, partition: batch.partition, nextOffset, counts: routed.counts };
        this.emit('committed', event);
      } catch (err) {
        if (err === this.rejoin) throw err;
        if (chunkAbort.signal.aborted || this.abort.signal.aborted) {
          log.info({ from: raws[0]!.offset, reason: errorMessage(err) }, 'chunk abandoned; it will be consumed again');
          return this.leaveBatch(batchKey);
        }
        // Not committed: kafkajs restarts the batch from the last resolved offset after a pause.
        this.options.metrics.retries.inc({ stage: this.options.target.name });
        log.error({ err: errorMessage(err), from: raws[0]!.offset }, 'chunk failed before commit; it will be retried');
        throw retriable(err);
      } finally {
        clearInterval(timer);
        this.abort.signal.removeEventListener('abort', onStop);
        this.inflight.delete(tracked);
        finished();
      }
      await heartbeat();
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
      this.breaker.dispose();
      await this.consumer?.disconnect().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'consumer disconnect failed'));
      await this.admin?.then((a) => a.disconnect()).catch(() => undefined);
      await this.committer.close();
      await this.processor.close?.();
      this.log.info('stage stopped');
    })();
    return this.stopping;
  }
}
