import type { Kafka, Producer } from 'kafkajs';
import type { Logger } from '../core/logger.js';
import { createProducer } from './client.js';
import { sendLanes, type OutboundMessage, type PartitionsOf } from './send-plan.js';

/** The input position a commit moves forward, for stages; sources have none. */
export interface InputPosition {
  groupId: string;
  topic: string;
  partition: number;
  /** The next offset to consume (last processed + 1). */
  nextOffset: string;
}

export interface CommitRequest {
  /** Which transactional writer: an input topic-partition's for stages, the instance's own for sources. */
  writer: string;
  byTopic: ReadonlyMap<string, OutboundMessage[]>;
  input?: InputPosition;
}

/** Writes outputs (and, for stages, the input offsets) as one step. */
export interface Committer {
  /**
   * Takes over a writer: from now on no earlier holder of it (another process included) can commit. Stages
   * call it before reading the partition's committed offset.
   */
  fence(writer: string): Promise<void>;
  commit(req: CommitRequest, commitOffsets: (position: InputPosition) => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

export interface CommitterOptions {
  /** max.message.bytes of a topic, as the broker has it: sends are split to fit. */
  limitOf: (topic: string) => number;
  /** Partitions of an output topic: every send then goes to one partition (see planLanes). */
  partitionsOf?: PartitionsOf;
  /** Transaction timeout: how long read_committed consumers wait on a transaction left open by a crash. */
  transactionTimeoutMs?: number;
}

/**
 * Exactly-once: outputs and offsets in one Kafka transaction, split into as many sends as the topics' size limits
 * need. Each writer is one transactional id (kafkajs has no group-metadata fencing, KIP-447): a stage uses one
 * per input partition, so a new owner of the partition fences the old one and a zombie's transaction can never
 * commit after a rebalance.
 */
export class TransactionalCommitter implements Committer {
  private readonly producers = new Map<string, Promise<Producer>>();

  constructor(
    private readonly kafka: Kafka,
    private readonly transactionalIdPrefix: string,
    private readonly logger: Logger,
    private readonly options: CommitterOptions,
  ) {}

  private idOf(writer: string): string {
    return `${this.transactionalIdPrefix}-${writer}`;
  }

  /**
   * A new producer for the writer's transactional id. Its InitProducerId bumps the epoch, which fences every
   * older producer of the id and completes (aborts) a transaction one left open; it returns only after that.
   */
  async fence(writer: string): Promise<void> {
    const id = this.idOf(writer);
    const previous = this.producers.get(id);
    this.producers.delete(id);
    await previous?.then((p) => p.disconnect()).catch(() => undefined);
    await this.producerFor(id);
  }

  private producerFor(id: string): Promise<Producer> {
    let p = this.producers.get(id);
    if (!p) {
      const created = (async () => {
        const producer = createProducer(this.kafka, { transactionalId: id, transactionTimeout: this.options.transactionTimeoutMs ?? 60_000 });
        await producer.connect();
        // kafkajs sends InitProducerId with the transactional id when the first transaction begins, not on
        // connect: begin (and drop) an empty one now, so the fence is in place before any offset is read.
        await (await producer.transaction()).abort();
        return producer;
      })();
      created.catch(() => {
        if (this.producers.get(id) === created) this.producers.delete(id);
      });
      this.producers.set(id, created);
      p = created;
    }
    return p;
  }

  async commit(req: CommitRequest): Promise<void> {
    const id = this.idOf(req.writer);
    const entry = this.producerFor(id);
    const producer = await entry;
    const txn = await producer.transaction();
    try {
      await sendLanes((topicMessages) => txn.sendBatch({ topicMessages, acks: -1 }), req.byTopic, this.options.limitOf, this.options.partitionsOf);
      if (req.input) {
        const { groupId, topic, partition, nextOffset } = req.input;
        await txn.sendOffsets({ consumerGroupId: groupId, topics: [{ topic, partitions: [{ partition, offset: nextOffset }] }] });
      }
      await txn.commit();
    } catch (err) {
      await txn.abort().catch((abortErr: unknown) => this.logger.warn({ err: String(abortErr) }, 'transaction abort failed'));
      // A failed producer may be fenced or in an unknown state: the caller fences in afresh before retrying.
      if (this.producers.get(id) === entry) this.producers.delete(id);
      await producer.disconnect().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    const all = [...this.producers.values()];
    this.producers.clear();
    await Promise.allSettled(all.map(async (p) => (await p).disconnect()));
  }
}

/** At-least-once: idempotent produce, then commit the offsets; a crash in between re-delivers the chunk. */
export class AtLeastOnceCommitter implements Committer {
  private producer: Promise<Producer> | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly options: CommitterOptions,
  ) {}

  /** At-least-once has nothing to fence: a previous owner's late write is a tolerated duplicate. */
  async fence(): Promise<void> {}

  async commit(req: CommitRequest, commitOffsets: (position: InputPosition) => Promise<void>): Promise<void> {
    if (req.byTopic.size > 0) {
      this.producer ??= (async () => {
        const producer = createProducer(this.kafka, { idempotent: true });
        await producer.connect();
        return producer;
      })();
      const producer = await this.producer;
      await sendLanes((topicMessages) => producer.sendBatch({ topicMessages, acks: -1 }), req.byTopic, this.options.limitOf, this.options.partitionsOf);
    }
    if (req.input) await commitOffsets(req.input);
  }

  async close(): Promise<void> {
    await (await this.producer)?.disconnect();
  }
}
