import type { Kafka } from 'kafkajs';
import type { Logger } from '../core/logger.js';

export interface TopicSpec {
  name: string;
  partitions: number;
  replicationFactor: number;
  compacted?: boolean;
  configs?: Record<string, string>;
}

/** Creates the topics that do not exist yet; existing ones are left as they are. Returns the names created. */
export async function ensureTopics(kafka: Kafka, specs: TopicSpec[], logger?: Logger): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = specs.filter((s) => !existing.has(s.name));
    if (missing.length === 0) return [];
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((s) => ({
        topic: s.name,
        numPartitions: s.partitions,
        replicationFactor: s.replicationFactor,
        configEntries: Object.entries({ ...(s.configs ?? {}), ...(s.compacted ? { 'cleanup.policy': 'compact' } : {}) }).map(([name, value]) => ({ name, value })),
      })),
    });
    logger?.info({ topics: missing.map((s) => s.name) }, 'created topics');
    return missing.map((s) => s.name);
  } finally {
    await admin.disconnect();
  }
}

/** High watermark minus low watermark, summed over partitions: records currently in the topic (transaction markers included). */
export async function topicEndOffsets(kafka: Kafka, topic: string): Promise<Map<number, { low: bigint; high: bigint }>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return new Map(offsets.map((o) => [o.partition, { low: BigInt(o.low), high: BigInt(o.high) }]));
  } finally {
    await admin.disconnect();
  }
}
