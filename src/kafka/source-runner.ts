import { randomUUID } from 'node:crypto';
import { EventEmitter, setMaxListeners } from 'node:events';
import type { Kafka } from 'kafkajs';
import { errorCode, errorMessage, isRetryable } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { StageMetrics } from '../core/metrics.js';
import { backoffDelay, sleep } from '../core/retry.js';
import type { Source, StageContext } from '../processors/stage.js';
import type { RecordSerde } from '../serde/serde.js';
import { fetchMessageLimits, fetchPartitionCounts, LazyAdmin } from './admin.js';
import { BacklogGate, type BacklogBound } from './backlog-gate.js';
import { AtLeastOnceCommitter, TransactionalCommitter, type Committer } from './committer.js';
import { portRestorer } from './restore.js';
import { OutcomeRouter, outputTopics, type RouteTarget } from './route.js';
import type { OutboundMessage } from './send-plan.js';

/** A newer producer of the same transactional id exists (kafkajs names the error by its protocol type). */
function fenced(err: unknown): boolean {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    const { type, code } = e as { type?: string; code?: number };
    // 47 INVALID_PRODUCER_EPOCH, 90 PRODUCER_FENCED (newer brokers; kafkajs has no name for it).
    if (type === 'INVALID_PRODUCER_EPOCH' || type === 'PRODUCER_FENCED' || code === 47 || code === 90) return true;
  }
  return false;
}

export interface SourceRunnerOptions {
  kafka: Kafka;
  serde: RecordSerde;
  logger: Logger;
  metrics: StageMetrics;
  /** Transactional ids of this source start with it; each instance adds its own suffix. */
  transactionalIdPrefix: string;
  target: RouteTarget;
  batchSize: number;
  exactlyOnce: boolean;
  /**
   * Transaction timeout of a source's writer: after a crash, read_committed consumers of its topics wait up to
   * this long for the broker to abort the transaction it left open (a restarted source has a new id).
   */
  transactionTimeoutMs?: number;
  /** The source waits while the stages reading its output are this far behind (see BacklogGate). */
  backlog?: BacklogBound;
  /** Writes the batches; built from `exactlyOnce` when absent. */
  committer?: Committer;
}

/**
 * Drives a source stage: asks it for batches and writes each batch atomically (one transaction, split into
 * sends that fit the topics' size limits) to its output and rejects topics, until the source is finished or the
 * runner is stopped. Each instance writes with a transactional id of its own, so any number of processes can
 * run the same source side by side without fencing each other.
 * Events: 'committed' ({ counts }), 'finished', 'fatal' (the source failed for good).
 */
export class SourceRunner extends EventEmitter {
  private committer: Committer | undefined;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private loop: Promise<void> | undefined;
  private draining = false;
  /** Aborted when the runner starts stopping: a source waiting for its readers stops waiting. */
  private readonly drainSignal = new AbortController();
  private failure: unknown;
  /** Transactional writer: the instance's own, or, for an exclusive source, the one every instance shares. */
  readonly writer: string;
  /** Another instance of an exclusive source fenced this one: it stops producing. */
  private takenOver = false;
  readonly totals = { out: 0, rejected: 0 };
  private readonly admin: LazyAdmin;
  private readonly gate: BacklogGate | undefined;

  constructor(
    private readonly source: Source<unknown>,
    private readonly options: SourceRunnerOptions,
  ) {
    super();
    this.log = options.logger.child({ stage: options.target.name });
    this.writer = source.exclusive ? 'exclusive' : randomUUID();
    this.admin = new LazyAdmin(options.kafka);
    this.gate = options.backlog && options.backlog.max > 0 && options.backlog.groups.length > 0 ? new BacklogGate(() => this.admin.get(), options.backlog, this.log) : undefined;
  }

  async start(): Promise<void> {
    // Every request in flight listens on the stop signal; many are expected, not a leak.
    setMaxListeners(0, this.abort.signal);
    const { kafka, exactlyOnce, target } = this.options;
    const outputs = [...Object.values(target.ports), target.rejects];
    target.messageLimits = { ...target.messageLimits, ...(await fetchMessageLimits(await this.admin.get(), outputs)) };
    target.partitionCounts = await fetchPartitionCounts(await this.admin.get(), outputs);
    // Only the backlog bound reads the broker while the source runs.
    if (!this.gate) await this.admin.close();
    this.committer = this.options.committer ?? (exactlyOnce
      ? new TransactionalCommitter(kafka, this.options.transactionalIdPrefix, this.log, { ...outputTopics(target), transactionTimeoutMs: this.options.transactionTimeoutMs ?? 30_000 })
      : new AtLeastOnceCommitter(kafka, outputTopics(target)));
    // An exclusive source's fence also completes the transaction its predecessor left open, so the state read
    // below sees everything committed and waits on nothing.
    await this.committer.fence(this.writer);
    const ctx: StageContext = { logger: this.log, signal: this.abort.signal, heartbeat: async () => undefined };
    await this.source.init?.(ctx, portRestorer(kafka, this.options.serde, target, this.log));
    this.loop = this.run(ctx).catch((err: unknown) => {
      if (this.abort.signal.aborted) return;
      this.failure = err;
      this.log.fatal({ code: errorCode(err), err: errorMessage(err) }, 'source failed for good');
      this.emit('fatal', err);
    });
    this.log.info({ output: target.ports.out, writer: this.writer, maxBacklog: this.gate ? this.options.backlog!.max : null }, 'source started');
  }

  /** Resolves when the source has finished (or was stopped); rejects when it failed for good. */
  async finished(): Promise<void> {
    await (this.loop ?? Promise.resolve());
    if (this.failure !== undefined) throw this.failure;
  }

  private async run(ctx: StageContext): Promise<void> {
    const { target, serde, batchSize } = this.options;
    for (let failures = 0; !this.draining && !this.takenOver; ) {
      let outcomes;
      await this.gate?.wait(this.drainSignal.signal);
      if (this.draining) break;
      try {
        outcomes = await this.source.next(batchSize, ctx);
        failures = 0;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (!isRetryable(err)) throw err;
        failures++;
        const delay = backoffDelay(Math.min(failures, 16), target.retry);
        this.log.warn({ attempt: failures, delayMs: delay, code: errorCode(err), err: errorMessage(err) }, 'source failed; retrying');
        await sleep(delay, this.abort.signal).catch(() => undefined);
        continue;
      }
      if (outcomes.length === 0) break;
      const router = new OutcomeRouter(serde, target, this.log);
      for (const outcome of outcomes) {
        await router.add(outcome.kind === 'failed' ? { kind: 'dead', code: errorCode(outcome.error), reason: errorMessage(outcome.error) } : outcome, undefined);
      }
      const routed = router.routed(0);
      await this.write(routed.byTopic);
      if (this.takenOver) break;
      // A transaction's commit marker takes an offset too, and the backlog is read in offsets.
      this.gate?.wrote(routed.counts.out + (this.options.exactlyOnce ? 1 : 0));
      this.totals.out += routed.counts.out;
      this.totals.rejected += routed.counts.rejected;
      this.options.metrics.record(target.name, routed.counts);
      this.emit('committed', { counts: routed.counts });
    }
    this.log.info(this.totals, 'source finished');
    this.emit('finished', this.totals);
  }

  /** Writes one batch, retrying while the broker is unreachable; the batch is kept, never made again. */
  private async write(byTopic: ReadonlyMap<string, OutboundMessage[]>): Promise<void> {
    if (byTopic.size === 0) return;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.committer!.commit({ writer: this.writer, byTopic }, async () => undefined);
        return;
      } catch (err) {
        if (this.abort.signal.aborted) throw err;
        if (this.options.exactlyOnce && this.source.exclusive && fenced(err)) {
          // Fencing back would start a tug of war: the newer instance keeps the source (e.g. during a deploy).
          this.log.warn({ err: errorMessage(err) }, 'another instance of this exclusive source took over; this one stops producing');
          this.takenOver = true;
          return;
        }
        const delay = backoffDelay(Math.min(attempt, 16), this.options.target.retry);
        this.log.warn({ attempt, delayMs: delay, err: errorMessage(err) }, 'writing a source batch failed; retrying with the same records');
        await sleep(delay, this.abort.signal);
        await this.committer!.fence(this.writer).catch(() => undefined);
      }
    }
  }

  /** Lets the batch in flight finish (up to graceMs), then stops the source and closes the producer. */
  async stop(graceMs = 10_000): Promise<void> {
    this.draining = true;
    this.drainSignal.abort();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.loop, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.abort.abort(new Error('stage stopping'));
    await this.loop;
    await this.source.close?.();
    await this.committer?.close();
    await this.admin.close();
    this.log.info('source stopped');
  }
}
