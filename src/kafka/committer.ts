import type { Kafka, Producer, TopicMessages } from 'kafkajs';
import type { Logger } from '../core/logger.js';
import { PRODUCER_RETRY } from './client.js';
import type { OutboundMessage } from './route.js';

export interface CommitRequest {
  groupId: string;
  topic: string;
  partition: number;
  /** The next offset to consume (last processed + 1). */
  nextOffset: string;
  byTopic: Map<string, OutboundMessage[]>;
}

/** Writes a chunk's outputs and the input offsets as one step. */
export interface Committer {
  /**
   * Takes over writing for an input partition: from now on no earlier writer of it (another process
   * included) can commit. Call before reading the partition's committed offset.
   */
  fence(topic: string, partition: number): Promise<void>;
  commit(req: CommitRequest, commitOffsets: (topic: string, partition: number, offset: string) => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

function topicMessages(byTopic: Map<string, OutboundMessage[]>): TopicMessages[] {
  return [...byTopic].map(([topic, messages]) => ({ topic, messages: messages.map((m) => ({ key: m.key, value: m.value, headers: m.headers })) }));
}

/**
 * Exactly-once: outputs and offsets in one Kafka transaction. One transactional id per input partition
 * (kafkajs has no group-metadata fencing, KIP-447): a new owner of the partition fences the old one, so a
 * zombie's transaction can never commit after a rebalance.
 */
export class TransactionalCommitter implements Committer {
  private readonly producers = new Map<string, Promise<Producer>>();

  constructor(
    private readonly kafka: Kafka,
    private readonly transactionalIdPrefix: string,
    private readonly logger: Logger,
  ) {}

  private idOf(topic: string, partition: number): string {
    return `${this.transactionalIdPrefix}-${topic}-${partition}`;
  }

  /**
   * A new producer for the partition's transactional id. Its InitProducerId bumps the epoch, which fences every
   * older producer of the id and completes (aborts) a transaction one left open; it returns only after that.
   */
  async fence(topic: string, partition: number): Promise<void> {
    const id = this.idOf(topic, partition);
    const previous = this.producers.get(id);
    this.producers.delete(id);
    await previous?.then((p) => p.disconnect()).catch(() => undefined);
    await this.producerFor(id);
  }

  private producerFor(id: string): Promise<Producer> {
    let p = this.producers.get(id);
    if (!p) {
      const created = (async () => {
        const producer = this.kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1, retry: PRODUCER_RETRY, transactionTimeout: 60_000 });
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
    const id = this.idOf(req.topic, req.partition);
    const entry = this.producerFor(id);
    const producer = await entry;
    const txn = await producer.transaction();
    try {
      if (req.byTopic.size > 0) await txn.sendBatch({ topicMessages: topicMessages(req.byTopic), acks: -1 });
      await txn.sendOffsets({ consumerGroupId: req.groupId, topics: [{ topic: req.topic, partitions: [{ partition: req.partition, offset: req.nextOffset }] }] });
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

  constructor(private readonly kafka: Kafka) {}

  /** At-least-once has nothing to fence: a previous owner's late write is a tolerated duplicate. */
  async fence(): Promise<void> {}

  async commit(req: CommitRequest, commitOffsets: (topic: string, partition: number, offset: string) => Promise<void>): Promise<void> {
    if (req.byTopic.size > 0) {
      this.producer ??= (async () => {
        const producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 5, retry: PRODUCER_RETRY });
        await producer.connect();
        return producer;
      })();
      await (await this.producer).sendBatch({ topicMessages: topicMessages(req.byTopic), acks: -1 });
    }
    await commitOffsets(req.topic, req.partition, req.nextOffset);
  }

  async close(): Promise<void> {
    await (await this.producer)?.disconnect();
  }
}
