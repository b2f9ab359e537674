import type { Admin, Kafka } from 'kafkajs';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { StageMetrics } from '../core/metrics.js';
import { readStableOffsets } from './stable-offsets.js';

export interface LagSubject {
  stage: string;
  groupId: string;
  topic: string;
}

/**
 * The offset `groupId` has committed on each partition of `topic`; partitions it never committed on are absent.
 * Stable: an offset a transaction is still committing is waited for, never answered with the one before it.
 */
export async function groupOffsets(admin: Admin, groupId: string, topic: string): Promise<Map<number, bigint>> {
  const [offsets] = await readStableOffsets(() => admin.fetchOffsets({ groupId, topics: [topic] }));
  return new Map((offsets?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)] as const).filter(([, offset]) => offset >= 0n));
}

/** Records of each partition not yet committed (transaction markers included), from the topic's ends and a group's offsets. */
export function lagOf(ends: readonly { partition: number; low: string; high: string }[], committed: ReadonlyMap<number, bigint>): Map<number, number> {
  // No commit yet: the group starts from the earliest record still in the partition.
  return new Map(ends.map((end) => [end.partition, Number(BigInt(end.high) - (committed.get(end.partition) ?? BigInt(end.low)))]));
}

/** Records of `topic` not yet committed by `groupId`, per partition (transaction markers included). */
export async function consumerLag(admin: Admin, groupId: string, topic: string): Promise<Map<number, number>> {
  const [ends, committed] = await Promise.all([admin.fetchTopicOffsets(topic), groupOffsets(admin, groupId, topic)]);
  return lagOf(ends, committed);
}

/**
 * Polls the consumer lag of each stage's group into `magpie_consumer_lag_records`, from outside the stage
 * runners (one admin client, the committed offsets the broker holds), so it is right whichever process commits.
 */
export function watchConsumerLag(kafka: Kafka, subjects: readonly LagSubject[], metrics: StageMetrics, logger: Logger, intervalMs = 5_000): { stop(): Promise<void> } {
  const admin = kafka.admin();
  let connected: Promise<void> | undefined;
  let polling: Promise<void> = Promise.resolve();
  const poll = async () => {
    try {
      await (connected ??= admin.connect());
      for (const s of subjects) {
        for (const [partition, lag] of await consumerLag(admin, s.groupId, s.topic)) metrics.setConsumerLag(s.stage, s.topic, partition, lag);
      }
    } catch (err) {
      // A missed poll leaves the last values; the next one tries again.
      logger.debug({ err: errorMessage(err) }, 'consumer lag poll failed');
    }
  };
  const timer = setInterval(() => {
    polling = polling.then(poll);
  }, intervalMs);
  timer.unref();
  polling = poll();
  return {
    stop: async () => {
      clearInterval(timer);
      await polling;
      if (connected) await admin.disconnect();
    },
  };
}
