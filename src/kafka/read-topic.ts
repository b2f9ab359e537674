import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { headersToStrings, type RawRecord } from './route.js';

export interface ReadTopicOptions {
  /** Stop at the end offsets seen at the start (default) or keep following new records. */
  follow?: boolean;
  /** Stop after this many records. */
  max?: number;
  /** Consumer group whose committed offsets to start from (and commit to, when `commit` is set). */
  groupId?: string;
  commit?: boolean;
  signal?: AbortSignal;
}

/**
 * Reads committed records of a topic in offset order per partition and hands them to `onRecord`.
 * Without a group it starts from the beginning under a throwaway group.
 */
export async function readTopic(kafka: Kafka, topic: string, onRecord: (raw: RawRecord) => Promise<void> | void, options: ReadTopicOptions = {}): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  let ends;
  try {
    ends = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect();
  }
  const pending = new Map(ends.filter((o) => BigInt(o.high) > BigInt(o.low)).map((o) => [o.partition, BigInt(o.high) - 1n]));
  const groupId = options.groupId ?? `magpie-read-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, readUncommitted: false, allowAutoTopicCreation: false });
  let count = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const checkEnd = () => {
    if (!options.follow && pending.size === 0) resolveDone();
  };
  options.signal?.addEventListener('abort', () => resolveDone(), { once: true });
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    const target = pending.get(payload.partition);
    if (payload.topic === topic && target !== undefined && BigInt(payload.lastOffset) >= target) pending.delete(payload.partition);
    checkEnd();
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    checkEnd();
    await consumer.run({
      autoCommit: Boolean(options.commit),
      eachBatch: async ({ batch, resolveOffset }) => {
        for (const m of batch.messages) {
          if (options.max !== undefined && count >= options.max) {
            resolveDone();
            return;
          }
          await onRecord({ topic: batch.topic, partition: batch.partition, offset: m.offset, key: m.key ?? null, value: m.value ?? null, headers: headersToStrings(m.headers), timestamp: m.timestamp });
          count++;
          resolveOffset(m.offset);
        }
      },
    });
    await done;
  } finally {
    await consumer.disconnect();
    if (!options.groupId) {
      const cleanup = kafka.admin();
      await cleanup.connect().then(() => cleanup.deleteGroups([groupId])).catch(() => undefined).finally(() => cleanup.disconnect());
    }
  }
  return count;
}
