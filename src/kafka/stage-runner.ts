import { EventEmitter, setMaxListeners } from 'node:events';
import type { Admin, Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { CircuitBreaker, type CircuitBreakerOptions, type CircuitStateChange } from '../core/circuit-breaker.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { StageMetrics } from '../core/metrics.js';
import { backoffDelay, sleep } from '../core/retry.js';
import type { Processor, StageContext, StateRestorer } from '../processors/stage.js';
import type { RecordSerde } from '../serde/serde.js';
import { fetchMessageLimits, fetchPartitionCounts, LazyAdmin } from './admin.js';
import { groupOffsets } from './consumer-lag.js';
import { isInferredRefusal, KafkaAccessError } from './auth-errors.js';
import { AtLeastOnceCommitter, TransactionalCommitter, type Committer } from './committer.js';
import { PartitionWindow, type CommitGroup, type CommitResult } from './partition-window.js';
import { headersToStrings, outputTopics, routeChain, type ChainLink, type RawRecord, type RouteTarget, type RoutedBatch } from './route.js';
import { portRestorer } from './restore.js';
import { WindowTrace } from './window-trace.js';

export interface StageRunnerOptions {
  kafka: Kafka;
  serde: RecordSerde;
  logger: Logger;
  metrics: StageMetrics;
  groupId: string;
  input: string;
  target: RouteTarget;
  batchSize: number;
  /** Chunks of one partition processed at once (the sliding window); committed in offset order. */
  window: number;
  /** Input partitions consumed concurrently. */
  concurrency: number;
  exactlyOnce: boolean;
  sessionTimeoutMs: number;
  /** When calls keep failing with retryable errors, consumption pauses and a probe retries after a cool-down. */
  circuitBreaker?: CircuitBreakerOptions;
  /** Writes outputs and offsets; built from `exactlyOnce` when absent. */
  committer?: Committer;
  /**
   * Stages chained after this one in memory (a sub-topology `a -> b -> c`): each gets what the one before emits
   * on 'out', in the same chunk and transaction; each keeps its own rejects, dead letters, circuit and metrics.
   */
  followers?: readonly { processor: Processor<unknown, unknown>; target: RouteTarget; circuitBreaker?: CircuitBreakerOptions }[];
}

export const DEFAULT_CIRCUIT_BREAKER: CircuitBreakerOptions = { failureThreshold: 3, coolDownMs: 5_000, maxCoolDownMs: 60_000 };

/** Consumers in a row that could not join while the broker answered, before a likely refusal stops the stage. */
const REFUSED_JOINS_BEFORE_STOP = 3;

/** Commit retries back off up to this; a commit is retried for as long as the partition is ours. */
const COMMIT_RETRY = { initialDelayMs: 200, maxDelayMs: 5_000 };

export interface BatchCommittedEvent {
  topic: string;
  partition: number;
  nextOffset: string;
  counts: { in: number; out: number; rejected: number; deadLettered: number };
}

/**
 * Owns consume → process → produce → commit for one processor stage. Stages never touch kafkajs.
 *
 * The consumer loop only feeds per-partition sliding windows (PartitionWindow) and returns at once, so kafkajs
 * fetches ahead, heartbeats and rejoins on time however long inference takes; a window that holds enough
 * pauses its partition. Up to `window` chunks of a partition are processed at once and committed in offset
 * order; a record that fails is retried alone (routeBatch) while its siblings keep their results.
 *
 * Exactly-once across owners (kafkajs has no KIP-447): before its first chunk of a partition, the runner starts a
 * new transactional producer for the partition (fencing any previous owner, a zombie included, and completing
 * its open transaction) and only then reads the group's committed offset. A commit that fails keeps its
 * outputs: the runner fences in again, reads the committed offset and either sends the same outputs again,
 * finds them written already, or, when another owner moved the partition on, drops the window and seeks.
 *
 * Events: 'committed' (BatchCommittedEvent), 'circuit' (CircuitStateChange), 'fatal' (the stage cannot go on).
 */
export class StageRunner extends EventEmitter {
  private consumer: Consumer | undefined;
  private readonly admin: LazyAdmin;
  private readonly committer: Committer;
  /** The head stage first, then its followers. */
  private readonly links: ChainLink[];
  private readonly processors: Processor<unknown, unknown>[];
  /** Circuits open now, by stage: consumption pauses while any is. */
  private readonly openCircuits = new Set<string>();
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private stopping: Promise<void> | undefined;
  private draining = false;
  private readonly windows = new Map<number, PartitionWindow>();
  /** Window creation in progress (fencing in), per partition. */
  private readonly opening = new Map<number, Promise<PartitionWindow>>();
  /** Partitions paused because their window is full. */
  private readonly backpressured = new Set<number>();
  /** Last offset seen for partitions this runner holds no window for (control records at the start). */
  private readonly skipped = new Map<number, bigint>();
  /** Consumers in a row given up by kafkajs on a likely refusal of the group, since the last join. */
  private refusedJoins = 0;
  /** Reads the stage's changelog ports, for init and for catching up after each fence. */
  private readonly restorer: StateRestorer;
  /** MAGPIE_TRACE_WINDOWS=1: where the partitions wait (window-trace.ts). */
  private readonly trace = WindowTrace.enabled ? new WindowTrace(this.windows, () => this.windows.size > 0 && this.backpressured.size >= this.windows.size) : undefined;

  constructor(
    private readonly processor: Processor<unknown, unknown>,
    private readonly options: StageRunnerOptions,
  ) {
    super();
    this.log = options.logger.child({ stage: options.target.name });
    this.admin = new LazyAdmin(options.kafka);
    this.restorer = portRestorer(options.kafka, options.serde, options.target, this.log);
    // The limits are read from the broker at start (into target.messageLimits, shared by the chain's stages).
    this.committer =
      options.committer ??
      (options.exactlyOnce ? new TransactionalCommitter(options.kafka, options.groupId, this.log, outputTopics(options.target)) : new AtLeastOnceCommitter(options.kafka, outputTopics(options.target)));
    const breaker = new CircuitBreaker(options.circuitBreaker ?? DEFAULT_CIRCUIT_BREAKER);
    breaker.on('state', (change: CircuitStateChange) => this.onCircuit(options.target.name, change));
    options.metrics.watchCircuit(options.target.name, breaker);
    this.processors = [processor, ...(options.followers ?? []).map((f) => f.processor)];
    this.links = [
      { process: (records, ctx) => processor.process(records, ctx), target: options.target, breaker },
      ...(options.followers ?? []).map((f): ChainLink => {
        const breaker = new CircuitBreaker(f.circuitBreaker ?? DEFAULT_CIRCUIT_BREAKER);
        breaker.on('state', (change: CircuitStateChange) => this.onCircuit(f.target.name, change));
        options.metrics.watchCircuit(f.target.name, breaker);
        return { process: (records, ctx) => f.processor.process(records, ctx), target: f.target, breaker };
      }),
    ];
    // Every request of every chunk listens on the stop signal: hundreds at once are expected, not a leak.
    setMaxListeners(0, this.abort.signal);
  }

  get input(): string {
    return this.options.input;
  }

  get groupId(): string {
    return this.options.groupId;
  }

  async start(): Promise<void> {
    const { groupId, input, target } = this.options;
    // The broker's own size limits of every output topic: sends are split to fit, larger records dead-lettered.
    // A chained stage's 'out' goes to the next stage in memory: that topic is not written (nor granted, magpie acls).
    const written = (l: ChainLink, k: number) => Object.entries(l.target.ports).filter(([port]) => port !== 'out' || k === this.links.length - 1).map(([, topic]) => topic);
    const outputs = this.links.flatMap((l, k) => [...written(l, k), l.target.rejects, l.target.deadLetter]);
    const limits = { ...target.messageLimits, ...(await fetchMessageLimits(await this.admin.get(), outputs)) };
    const partitions = await fetchPartitionCounts(await this.admin.get(), outputs);
    for (const link of this.links) Object.assign(link.target, { messageLimits: limits, partitionCounts: partitions });
    await this.processor.init?.(this.context(this.log, this.abort.signal), this.restorer);
    for (const f of this.options.followers ?? []) {
      await f.processor.init?.(this.context(this.log.child({ stage: f.target.name }), this.abort.signal), this.restorer);
    }
    await this.startConsumer();
    this.log.info({ input, groupId, exactlyOnce: this.options.exactlyOnce, batchSize: this.options.batchSize, window: this.options.window }, 'stage started');
  }

  /** A consumer in the stage's group, fetching into the windows; partitions held back stay paused. */
  private async startConsumer(): Promise<void> {
    const { kafka, groupId, input, concurrency, sessionTimeoutMs } = this.options;
    const consumer = kafka.consumer({
      groupId,
      sessionTimeout: sessionTimeoutMs,
      rebalanceTimeout: Math.max(60_000, sessionTimeoutMs * 2),
      heartbeatInterval: Math.min(3_000, Math.floor(sessionTimeoutMs / 5)),
      readUncommitted: false,
      maxBytesPerPartition: 1_048_576,
      // A partition resumed after backpressure is fetched within this: it bounds the long poll on the others and
      // the sleep kafkajs takes when every partition is paused (a resume does not cut it short). At 500 ms the
      // windows of a fast stage had nothing to work on half the time (MAGPIE_TRACE_WINDOWS).
      maxWaitTimeInMs: 100,
      allowAutoTopicCreation: false,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.refusedJoins = 0;
      this.onAssignment(e.payload.memberAssignment);
    });
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      // Batches of control records only (transaction markers) never reach eachBatch: the position moves on.
      if (payload.topic !== input || payload.batchSize > 0) return;
      const last = BigInt(payload.lastOffset);
      const window = this.windows.get(payload.partition);
      if (window) window.skipTo(last);
      else this.skipped.set(payload.partition, last);
    });
    if (this.trace) {
      const trace = this.trace;
      consumer.on(consumer.events.FETCH_START, () => trace.fetchBegin());
      consumer.on(consumer.events.FETCH, () => trace.fetchEnd());
    }
    consumer.on(consumer.events.CRASH, (e) => {
      this.log.error({ err: String(e.payload.error), restart: e.payload.restart }, 'consumer crashed');
      if (e.payload.restart || this.stopping || this.consumer !== consumer) return;
      void this.onConsumerGivenUp(consumer, e.payload.error);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [input], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: concurrency,
      eachBatch: (payload) => this.onBatch(payload),
    });
    if (this.openCircuits.size > 0) consumer.pause([{ topic: input }]);
    else if (this.backpressured.size > 0) consumer.pause([{ topic: input, partitions: [...this.backpressured] }]);
  }

  /**
   * kafkajs gives a consumer up when the group's coordinator stays out of reach past its retries. A broker
   * restarting slowly looks like this, and so does a group this principal may not use (kafkajs hides that
   * refusal behind the same "coordinator not found"). A new consumer takes the crashed one's place, the windows
   * carrying on; a refusal the broker stated, or one that persists while the broker answers, stops the stage:
   * an idle process would look healthy, so it says it is not.
   */
  private async onConsumerGivenUp(crashed: Consumer, err: unknown): Promise<void> {
    if (err instanceof KafkaAccessError) {
      if (!isInferredRefusal(err)) return void this.emit('fatal', err);
      this.refusedJoins++;
      if (this.refusedJoins >= REFUSED_JOINS_BEFORE_STOP && (await this.brokerAnswers())) return void this.emit('fatal', err);
    }
    await this.replaceConsumer(crashed, err);
  }

  /** The cluster answers this principal's requests (so a failing coordinator lookup is no outage). */
  private async brokerAnswers(): Promise<boolean> {
    try {
      await (await this.admin.get()).describeCluster();
      return true;
    } catch {
      return false;
    }
  }

  private async replaceConsumer(crashed: Consumer, cause: unknown): Promise<void> {
    await crashed.disconnect().catch(() => undefined);
    for (let attempt = 1; !this.stopping && this.consumer === crashed; attempt++) {
      const delay = backoffDelay(Math.min(attempt, 16), COMMIT_RETRY);
      this.log.warn({ err: errorMessage(cause), attempt, delayMs: delay }, 'kafkajs gave the consumer up; starting a new one');
      await sleep(delay, this.abort.signal).catch(() => undefined);
      if (this.stopping) return;
      try {
        await this.startConsumer();
        return;
      } catch (err) {
        cause = err;
        await this.consumer?.disconnect().catch(() => undefined);
        this.consumer = crashed;
      }
    }
  }

  /** `heartbeat`: only where the consumer loop itself waits (state catch-up); it never waits for inference. */
  private context(log: Logger, signal: AbortSignal, heartbeat: () => Promise<void> = async () => undefined): StageContext {
    return { logger: log, signal, heartbeat };
  }

  /**
   * A new assignment (kafkajs rebalances eagerly: every partition is revoked, then assigned). Windows of
   * partitions kept go on untouched: their chunks in flight finish and commit, and records fetched again from
   * the committed offset are recognised and skipped, so no finished work is lost to a rebalance. Windows of
   * partitions lost are abandoned at once: the new owner fenced this process' producer for them.
   */
  private onAssignment(assignment: Record<string, number[]>): void {
    const assigned = new Set(assignment[this.options.input] ?? []);
    for (const [partition, window] of this.windows) {
      if (assigned.has(partition)) continue;
      window.close('partition assigned to another member');
      this.windows.delete(partition);
      // kafkajs keeps a partition's pause across rebalances: paused for backpressure, lost and given back
      // later, it would never be fetched again (no batch, so no window to resume it).
      if (this.backpressured.delete(partition)) this.consumer?.resume([{ topic: this.options.input, partitions: [partition] }]);
      this.log.info({ partition }, 'partition revoked; its work in flight is abandoned');
    }
    this.log.info({ assignment }, 'joined group');
  }

  private onCircuit(stage: string, change: CircuitStateChange): void {
    const topic = this.options.input;
    const log = stage === this.options.target.name ? this.log : this.log.child({ stage });
    if (change.state === 'open') {
      log.warn({ failures: change.failures, coolDownMs: change.coolDownMs }, 'circuit open: calls keep failing; consumption paused until a probe succeeds');
      this.openCircuits.add(stage);
      this.consumer?.pause([{ topic }]);
    } else if (change.state === 'half-open') {
      log.info('circuit half-open: one call probes');
    } else {
      this.openCircuits.delete(stage);
      if (this.openCircuits.size === 0) {
        log.info('circuit closed: consumption resumed');
        this.consumer?.resume([{ topic }]);
        if (this.backpressured.size > 0) this.consumer?.pause([{ topic, partitions: [...this.backpressured] }]);
      }
    }
    this.emit('circuit', { ...change, stage });
  }

  /** The group's committed offset of a partition (-1: none). */
  private async committedOffset(partition: number): Promise<bigint> {
    return (await this.committedOffsets(await this.admin.get())).get(partition) ?? -1n;
  }

  /**
   * Fences any previous owner of the partition (a new transactional producer for it), lets the processor catch
   * its state up (onAssigned: nothing the previous owner commits can be missed any more), then reads the group's
   * committed offset: records below it were committed by that owner and must not be processed again.
   */
  private async fenceIn(partition: number, heartbeat?: () => Promise<void>): Promise<bigint> {
    await this.committer.fence(`${this.options.input}-${partition}`);
    await this.processor.onAssigned?.(partition, this.restorer, this.context(this.log.child({ partition }), this.abort.signal, heartbeat));
    return this.committedOffset(partition);
  }

  private windowFor(partition: number, firstOffset: bigint, heartbeat: () => Promise<void>): Promise<PartitionWindow> {
    const open = this.windows.get(partition);
    if (open) return Promise.resolve(open);
    let opening = this.opening.get(partition);
    if (!opening) {
      opening = (async () => {
        const committed = this.options.exactlyOnce ? await this.fenceIn(partition, heartbeat) : -1n;
        const start = committed >= 0n ? committed : firstOffset;
        const window = this.createWindow(partition, start);
        const skipped = this.skipped.get(partition);
        if (skipped !== undefined) window.skipTo(skipped);
        this.windows.set(partition, window);
        return window;
      })().finally(() => this.opening.delete(partition));
      this.opening.set(partition, opening);
    }
    return opening;
  }

  private createWindow(partition: number, start: bigint): PartitionWindow {
    const { input } = this.options;
    const log = this.log.child({ topic: input, partition });
    const window: PartitionWindow = new PartitionWindow(partition, start, this.options.window, this.options.batchSize, {
      route: (raws, signal) => this.route(raws, signal, log),
      commit: (group) => this.commit(window, group, log),
      backpressure: (paused) => {
        if (this.windows.get(partition) !== window) return;
        this.trace?.pause(partition, paused);
        if (paused) {
          this.backpressured.add(partition);
          this.consumer?.pause([{ topic: input, partitions: [partition] }]);
        } else {
          this.backpressured.delete(partition);
          if (this.openCircuits.size === 0) this.consumer?.resume([{ topic: input, partitions: [partition] }]);
        }
      },
      seek: (offset) => this.consumer?.seek({ topic: input, partition, offset: offset.toString() }),
      committed: (group) => this.onCommitted(partition, group),
      failed: (err) => {
        log.fatal({ err: errorMessage(err) }, 'partition window failed');
        this.emit('fatal', err);
      },
    });
    return window;
  }

  private async onBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    if (this.draining || !payload.isRunning()) return;
    if (batch.messages.length === 0) return;
    let window: PartitionWindow;
    try {
      window = await this.windowFor(batch.partition, BigInt(batch.messages[0]!.offset), () => payload.heartbeat());
    } catch (err) {
      this.log.warn({ partition: batch.partition, err: errorMessage(err) }, 'cannot take over the partition yet; retrying');
      throw Object.assign(new Error(`cannot take over partition ${batch.partition}: ${errorMessage(err)}`), { retriable: true });
    }
    if (this.draining || payload.isStale()) return;
    const raws: RawRecord[] = batch.messages.map((m) => ({
      topic: batch.topic,
      partition: batch.partition,
      offset: m.offset,
      key: m.key ?? null,
      value: m.value ?? null,
      headers: headersToStrings(m.headers),
      timestamp: m.timestamp,
    }));
    this.trace?.batch(batch.partition, raws.length);
    window.offer(raws, BigInt(batch.lastOffset()));
    // The window has the records: kafkajs may fetch on at once (the commit happens in the transaction).
    payload.resolveOffset(batch.lastOffset());
  }

  /** routeBatch until it succeeds: it fails as a whole only on faults outside the records (e.g. a schema registry down). */
  private async route(raws: RawRecord[], signal: AbortSignal, log: Logger): Promise<RoutedBatch> {
    const stop = AbortSignal.any([signal, this.abort.signal]);
    setMaxListeners(0, stop);
    const ctx = this.context(log, stop);
    for (let attempt = 1; ; attempt++) {
      try {
        return await routeChain(raws, this.links, this.options.serde, ctx);
      } catch (err) {
        if (stop.aborted) throw err;
        this.options.metrics.retries.inc({ stage: this.options.target.name });
        const delay = backoffDelay(Math.min(attempt, 16), this.options.target.retry);
        log.error({ err: errorMessage(err), from: raws[0]!.offset, attempt, delayMs: delay }, 'chunk failed; it will be retried');
        await sleep(delay, stop);
      }
    }
  }

  /**
   * Writes a group of chunks. On failure the outputs are kept: fence in again, read the committed offset, and
   * send again (nothing of it written), drop it (written already: only the answer was lost), or reset the window
   * (another owner moved on). Inference is never repeated for a chunk whose results are in hand.
   */
  private async commit(window: PartitionWindow, group: CommitGroup, log: Logger): Promise<CommitResult> {
    const { groupId, input } = this.options;
    const writer = `${input}-${window.partition}`;
    this.trace?.commitBegin(window.partition);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.committer.commit(
          { writer, byTopic: group.byTopic, input: { groupId, topic: input, partition: window.partition, nextOffset: group.next.toString() } },
          (p) => this.consumer!.commitOffsets([{ topic: p.topic, partition: p.partition, offset: p.nextOffset }]),
        );
        this.trace?.commitEnd(window.partition, Number(group.next - group.first));
        return { kind: 'committed' };
      } catch (err) {
        if (this.abort.signal.aborted || this.windows.get(window.partition) !== window) throw err;
        this.options.metrics.retries.inc({ stage: this.options.target.name });
        const delay = backoffDelay(Math.min(attempt, 16), COMMIT_RETRY);
        log.warn({ err: errorMessage(err), from: group.first.toString(), to: group.next.toString(), attempt, delayMs: delay }, 'commit failed; outputs kept, checking the partition before writing them again');
        await sleep(delay, this.abort.signal);
        const committed = await this.settledPosition(window, log);
        if (committed === group.next) {
          log.info({ committed: committed.toString() }, 'chunk found committed already; not written again');
          return { kind: 'already' };
        }
        // Anywhere else, another owner moved the partition on, perhaps past chunks still in this window: having just
        // fenced in, this process holds the newest producer, so nothing but this would stop it writing them again.
        if (committed !== group.first && committed >= 0n) {
          log.warn({ committed: committed.toString(), from: group.first.toString(), to: group.next.toString() }, 'another owner moved the partition on; dropping the window and fetching again from the committed offset');
          return { kind: 'reset', offset: committed };
        }
      }
    }
  }

  /**
   * After a commit whose outcome is unknown (its answer may have been lost with a broker): fences in and reads
   * the partition's committed offset, as often as it takes. Nothing is sent again before this has an answer: the
   * failed transaction may have committed, and only the settled offset (stable-offsets.ts) tells.
   */
  private async settledPosition(window: PartitionWindow, log: Logger): Promise<bigint> {
    for (let attempt = 1; ; attempt++) {
      try {
        return this.options.exactlyOnce ? await this.fenceIn(window.partition) : await this.committedOffset(window.partition);
      } catch (err) {
        if (this.abort.signal.aborted || this.windows.get(window.partition) !== window) throw err;
        const delay = backoffDelay(Math.min(attempt, 16), COMMIT_RETRY);
        log.warn({ err: errorMessage(err), attempt, delayMs: delay }, 'cannot fence in the partition yet; retrying before writing anything again');
        await sleep(delay, this.abort.signal);
      }
    }
  }

  private onCommitted(partition: number, group: CommitGroup): void {
    const { metrics, target, input } = this.options;
    const now = process.hrtime.bigint();
    for (const chunk of group.chunks) {
      for (const [stage, counts] of chunk.byStage ?? [[target.name, chunk.counts]]) {
        metrics.record(stage, counts);
        metrics.batchSeconds.observe({ stage }, Number(now - chunk.startedAt) / 1e9);
        metrics.observeRecordLatency(stage, chunk.timestamps);
      }
      const event: BatchCommittedEvent = { topic: input, partition, nextOffset: chunk.next.toString(), counts: chunk.counts };
      this.emit('committed', event);
    }
  }

  /**
   * True when this runner has nothing in flight and every partition of the input, as of the given end offsets,
   * is handled: consumed up to its end here, or committed up to it by the group.
   */
  caughtUp(ends: Map<number, { low: bigint; high: bigint }>, committed: Map<number, bigint> = new Map()): boolean {
    if (this.opening.size > 0) return false;
    for (const window of this.windows.values()) if (!window.idle) return false;
    for (const [partition, { low, high }] of ends) {
      if (high <= low) continue;
      const window = this.windows.get(partition);
      const seen = window?.fetchedThrough ?? this.skipped.get(partition);
      if (seen !== undefined && seen >= high - 1n) continue;
      // A partition this runner never fetched from (another member's, or caught up before the start).
      const c = committed.get(partition);
      if (c !== undefined && c >= high) continue;
      return false;
    }
    return true;
  }

  /** Committed offsets of the group (partitions never committed are absent), for caughtUp. */
  committedOffsets(admin: Admin): Promise<Map<number, bigint>> {
    return groupOffsets(admin, this.options.groupId, this.options.input);
  }

  /** Chunks in flight across partitions. */
  get inFlight(): number {
    let n = 0;
    for (const w of this.windows.values()) n += w.inFlight;
    return n;
  }

  /**
   * Stops taking new chunks, lets chunks in flight finish and commit for up to `graceMs`, then abandons the
   * rest (never committed, so they are consumed again after a restart) and closes.
   */
  stop(graceMs = 10_000): Promise<void> {
    this.stopping ??= (async () => {
      this.draining = true;
      if (this.trace) process.stderr.write(`${this.trace.report()}\n`);
      const windows = [...this.windows.values()];
      for (const w of windows) w.drain();
      if (this.inFlight > 0) {
        this.log.info({ chunks: this.inFlight, graceMs }, 'waiting for chunks in flight');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(windows.map((w) => w.whenIdle())), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
        clearTimeout(timer);
      }
      this.abort.abort(new Error('stage stopping'));
      for (const w of windows) w.close('stage stopping');
      for (const link of this.links) link.breaker?.dispose();
      await this.consumer?.disconnect().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'consumer disconnect failed'));
      await this.admin.close();
      await this.committer.close();
      for (const p of this.processors) await p.close?.();
      this.log.info('stage stopped');
    })();
    return this.stopping;
  }
}
