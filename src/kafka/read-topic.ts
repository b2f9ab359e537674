import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { MagpieError } from '../core/errors.js';
import { withRetry } from '../core/retry.js';
import { groupOffsets } from './consumer-lag.js';
import { headersToStrings, type RawRecord } from './route.js';

/** Consumer groups of readers without a group of their own start with this (ACLs grant them by prefix). */
export const READER_GROUP_PREFIX = 'magpie-read-';

export interface ReadTopicOptions {
  /** Stop at the end offsets seen at the start (default) or keep following new records. */
  follow?: boolean;
  /** Stop after this many records. */
  max?: number;
  /** Consumer group whose committed offsets to start from (and commit to, when `commit` is set). */
  groupId?: string;
  commit?: boolean;
  signal?: AbortSignal;
  /** Start every partition at this offset instead of its beginning (or the group's position), when it is later. */
  from?: bigint;
  /** Called once, before the first record, with where each partition starts (the group's position) and ends. */
  onStart?: (ranges: PartitionRange[]) => void;
}

/** Offsets of one partition: `start` is the next offset to read, `end` the high watermark seen at the start. */
export interface PartitionRange {
  partition: number;
  start: bigint;
  end: bigint;
}

/** Lets `onRecord` commit offsets of the group while the reader runs (e.g. once its output is durable). */
export interface ReadControl {
  /** Commits `offset` (the next offset to read) per partition for the reader's group. */
  commit(offsets: { partition: number; offset: string }[]): Promise<void>;
}

/** Where a group would start reading each partition (its committed offset, else the earliest), and the end. */
export async function partitionRanges(kafka: Kafka, topic: string, groupId?: string): Promise<PartitionRange[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    // Checked first: offsets of a missing topic are retried for half a minute before kafkajs gives up.
    if (!(await admin.listTopics()).includes(topic)) throw new MagpieError('KAFKA_UNKNOWN_TOPIC', `topic ${topic} does not exist: check the name (and --prefix)`, { details: { topic } });
    // A topic created a moment ago may still be electing its leaders (NOT_LEADER, LEADER_NOT_AVAILABLE).
    const ends = await withRetry(() => admin.fetchTopicOffsets(topic), {
      attempts: 20, initialDelayMs: 100, maxDelayMs: 2_000,
      shouldRetry: (err) => (err as { retriable?: boolean }).retriable === true,
    });
    const committed = groupId ? await groupOffsets(admin, groupId, topic) : new Map<number, bigint>();
    return ends.map((o) => {
      const low = BigInt(o.low);
      const position = committed.get(o.partition) ?? low;
      return { partition: o.partition, start: position > low ? position : low, end: BigInt(o.high) };
    });
  } finally {
    await admin.disconnect();
  }
}

/**
 * Reads committed records of a topic in offset order per partition and hands them to `onRecord`.
 * Without a group it starts from the beginning under a throwaway group; with one, from its committed offsets.
 */
export async function readTopic(kafka: Kafka, topic: string, onRecord: (raw: RawRecord, control: ReadControl) => Promise<void> | void, options: ReadTopicOptions = {}): Promise<number> {
  const from = options.from;
  const ranges = (await partitionRanges(kafka, topic, options.groupId)).map((r) => (from !== undefined && from > r.start ? { ...r, start: from } : r));
  options.onStart?.(ranges);
  // A partition the group has already read to the end yields no batch: it must not be waited for.
  const pending = new Map(ranges.filter((r) => r.end > r.start).map((r) => [r.partition, r.end - 1n]));
  const groupId = options.groupId ?? `${READER_GROUP_PREFIX}${randomUUID()}`;
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
  const control: ReadControl = {
    commit: (offsets) => consumer.commitOffsets(offsets.map((o) => ({ topic, partition: o.partition, offset: o.offset }))),
  };
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    checkEnd();
    await consumer.run({
      autoCommit: Boolean(options.commit),
      eachBatch: async ({ batch, resolveOffset }) => {
        for (const m of batch.messages) {
          if (options.signal?.aborted) return;
          // A fetch made before the seek below took effect may still hold earlier records.
          if (from !== undefined && BigInt(m.offset) < from) continue;
          if (options.max !== undefined && count >= options.max) {
            resolveDone();
            return;
          }
          await onRecord({ topic: batch.topic, partition: batch.partition, offset: m.offset, key: m.key ?? null, value: m.value ?? null, headers: headersToStrings(m.headers), timestamp: m.timestamp }, control);
          count++;
          resolveOffset(m.offset);
        }
      },
    });
    if (from !== undefined) for (const r of ranges) if (r.end > r.start) consumer.seek({ topic, partition: r.partition, offset: r.start.toString() });
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
