import { EventEmitter, setMaxListeners } from 'node:events';
import type { Kafka, Producer } from 'kafkajs';
import { errorCode, errorMessage, isRetryable } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { PRODUCER_RETRY } from './client.js';
import type { StageMetrics } from '../core/metrics.js';
import { backoffDelay, sleep } from '../core/retry.js';
import type { Source, StageContext, StateRestorer } from '../processors/stage.js';
import type { RecordSerde } from '../serde/serde.js';
import { restoreTopic } from './restore.js';
import { rejectMessage, type OutboundMessage, type RouteTarget } from './route.js';

export interface SourceRunnerOptions {
  kafka: Kafka;
  serde: RecordSerde;
  logger: Logger;
  metrics: StageMetrics;
  transactionalId: string;
  target: RouteTarget;
  batchSize: number;
  exactlyOnce: boolean;
}

/**
 * Drives a source stage: asks it for batches and writes each batch atomically (one transaction) to its
 * output and rejects topics, until the source is finished or the runner is stopped.
 * Events: 'committed' ({ counts }), 'finished'.
 */
export class SourceRunner extends EventEmitter {
  private producer: Producer | undefined;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private loop: Promise<void> | undefined;
  private draining = false;
  readonly totals = { out: 0, rejected: 0 };

  constructor(
    private readonly source: Source<unknown>,
    private readonly options: SourceRunnerOptions,
  ) {
    super();
    this.log = options.logger.child({ stage: options.target.name });
  }

  async start(): Promise<void> {
    // Every request in flight listens on the stop signal; many are expected, not a leak.
    setMaxListeners(0, this.abort.signal);
    const { kafka, exactlyOnce, transactionalId } = this.options;
    this.producer = exactlyOnce
      ? kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, retry: PRODUCER_RETRY })
      : kafka.producer({ idempotent: true, maxInFlightRequests: 5, retry: PRODUCER_RETRY });
    await this.producer.connect();
    const ctx: StageContext = { logger: this.log, signal: this.abort.signal, heartbeat: async () => undefined };
    // After connect: a transactional producer has fenced its predecessor, so the read sees no open transaction.
    const { target, serde } = this.options;
    const restorer: StateRestorer = {
      restore: (port, onRecord) => {
        const topic = target.ports[port];
        const schema = target.portSchemas[port];
        if (!topic || !schema) throw new Error(`stage ${target.name} has no port '${port}' to restore from`);
        return restoreTopic(kafka, serde, topic, schema, onRecord, this.log);
      },
    };
    await this.source.init?.(ctx, restorer);
    this.loop = this.run(ctx).catch((err: unknown) => {
      if (!this.abort.signal.aborted) this.log.error({ err: errorMessage(err) }, 'source failed');
    });
    this.log.info({ output: this.options.target.ports.out }, 'source started');
  }

  /** Resolves when the source has finished (or was stopped). */
  finished(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  private async run(ctx: StageContext): Promise<void> {
    const { target, serde, batchSize } = this.options;
    for (let failures = 0; !this.draining; ) {
      let outcomes;
      try {
        outcomes = await this.source.next(batchSize, ctx);
        failures = 0;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (!isRetryable(err)) throw err;
        failures++;
        const delay = backoffDelay(failures, target.retry);
        this.log.warn({ attempt: failures, delayMs: delay, code: errorCode(err), err: errorMessage(err) }, 'source failed; retrying');
        await sleep(delay, this.abort.signal).catch(() => undefined);
        continue;
      }
      if (outcomes.length === 0) break;
      const byTopic = new Map<string, OutboundMessage[]>();
      const push = (topic: string, m: OutboundMessage) => (byTopic.get(topic) ?? byTopic.set(topic, []).get(topic)!).push(m);
      const counts = { in: 0, out: 0, rejected: 0, deadLettered: 0 };
      for (const outcome of outcomes) {
        if (outcome.kind === 'emit') {
          for (const rec of outcome.records) {
            const port = rec.port ?? 'out';
            const topic = target.ports[port]!;
            const encoded = await serde.encode(target.portSchemas[port]!, rec.value, topic);
            push(topic, { key: rec.key ?? (rec.value as { uuid?: string }).uuid ?? null, value: encoded.value, headers: encoded.headers });
            // Records on other ports (e.g. progress) are bookkeeping, not output.
            if (port === 'out') counts.out++;
          }
        } else if (outcome.kind === 'reject') {
          push(target.rejects, await rejectMessage(serde, target, outcome, outcome.record));
          counts.rejected++;
        } else {
          this.log.error({ code: outcome.code, reason: outcome.reason }, 'source produced a dead outcome; counted as rejected');
          counts.rejected++;
        }
      }
      await this.write(byTopic);
      this.totals.out += counts.out;
      this.totals.rejected += counts.rejected;
      this.options.metrics.record(target.name, counts);
      this.emit('committed', { counts });
    }
    this.log.info(this.totals, 'source finished');
    this.emit('finished', this.totals);
  }

  private async write(byTopic: Map<string, OutboundMessage[]>): Promise<void> {
    if (byTopic.size === 0) return;
    const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    const producer = this.producer!;
    if (!this.options.exactlyOnce) {
      await producer.sendBatch({ topicMessages, acks: -1 });
      return;
    }
    const txn = await producer.transaction();
    try {
      await txn.sendBatch({ topicMessages, acks: -1 });
      await txn.commit();
    } catch (err) {
      await txn.abort().catch(() => undefined);
      throw err;
    }
  }

  /** Lets the batch in flight finish (up to graceMs), then stops the source and closes the producer. */
  async stop(graceMs = 10_000): Promise<void> {
    this.draining = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.loop, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.abort.abort(new Error('stage stopping'));
    await this.loop;
    await this.source.close?.();
    await this.producer?.disconnect();
    this.log.info('source stopped');
  }
}
