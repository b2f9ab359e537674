import type { Kafka, Producer, TopicMessages } from 'kafkajs';
import type { Logger } from '../core/logger.js';
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

  private producerFor(topic: string, partition: number): Promise<Producer> {
    const id = `${this.transactionalIdPrefix}-${topic}-${partition}`;
    let p = this.producers.get(id);
    if (!p) {
      p = (async () => {
        const producer = this.kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 60_000 });
        await producer.connect();
        return producer;
      })();
      p.catch(() => this.producers.delete(id));
      this.producers.set(id, p);
    }
    return p;
  }

  async commit(req: CommitRequest): Promise<void> {
    const producer = await this.producerFor(req.topic, req.partition);
    const txn = await producer.transaction();
    try {
      if (req.byTopic.size > 0) await txn.sendBatch({ topicMessages: topicMessages(req.byTopic), acks: -1 });
      await txn.sendOffsets({ consumerGroupId: req.groupId, topics: [{ topic: req.topic, partitions: [{ partition: req.partition, offset: req.nextOffset }] }] });
      await txn.commit();
    } catch (err) {
      await txn.abort().catch((abortErr: unknown) => this.logger.warn({ err: String(abortErr) }, 'transaction abort failed'));
      // A failed producer may be fenced or in an unknown state: start afresh next time.
      const id = `${this.transactionalIdPrefix}-${req.topic}-${req.partition}`;
      const stale = this.producers.get(id);
      this.producers.delete(id);
      await stale?.then((p) => p.disconnect()).catch(() => undefined);
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

  async commit(req: CommitRequest, commitOffsets: (topic: string, partition: number, offset: string) => Promise<void>): Promise<void> {
    if (req.byTopic.size > 0) {
      this.producer ??= (async () => {
        const producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
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
