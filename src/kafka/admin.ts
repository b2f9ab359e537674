import kafkajs, { type Admin, type Kafka } from 'kafkajs';
import { DEFAULT_MAX_MESSAGE_BYTES } from './send-plan.js';
import type { Logger } from '../core/logger.js';

export interface TopicSpec {
  name: string;
  partitions: number;
  replicationFactor: number;
  compacted?: boolean;
  configs?: Record<string, string>;
}

/**
 * One admin connection for a long-lived component, opened on first use and kept: a failed connect is tried
 * again on the next use, and close() is safe whether it ever connected or not.
 */
export class LazyAdmin {
  private admin: Promise<Admin> | undefined;

  constructor(private readonly kafka: Kafka) {}

  get(): Promise<Admin> {
    this.admin ??= (async () => {
      const admin = this.kafka.admin();
      await admin.connect();
      return admin;
    })().catch((err: unknown) => {
      this.admin = undefined;
      throw err;
    });
    return this.admin;
  }

  async close(): Promise<void> {
    await this.admin?.then((a) => a.disconnect()).catch(() => undefined);
    this.admin = undefined;
  }
}

/** Creates the topics that do not exist yet; existing ones are left as they are. Returns the names created. */
export async function ensureTopics(kafka: Kafka, specs: TopicSpec[], logger?: Logger): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = specs.filter((s) => !existing.has(s.name));
    if (missing.length === 0) return [];
    // waitForLeaders: true races on multi-broker clusters (kafkajs #815); poll the metadata instead.
    await admin.createTopics({
      waitForLeaders: false,
      topics: missing.map((s) => ({
        topic: s.name,
        numPartitions: s.partitions,
        replicationFactor: s.replicationFactor,
        configEntries: Object.entries({ ...(s.configs ?? {}), ...(s.compacted ? { 'cleanup.policy': 'compact' } : {}) }).map(([name, value]) => ({ name, value })),
      })),
    });
    await waitForLeaders(admin, missing.map((s) => s.name));
    logger?.info({ topics: missing.map((s) => s.name) }, 'created topics');
    return missing.map((s) => s.name);
  } finally {
    await admin.disconnect();
  }
}

async function waitForLeaders(admin: Admin, topics: string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const { topics: meta } = await admin.fetchTopicMetadata({ topics });
      if (meta.length === topics.length && meta.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))) return;
    } catch (err) {
      if (!(err as { retriable?: boolean }).retriable || Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error(`topics ${topics.join(', ')} have no leaders after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Low and high watermark of each partition, through an admin the caller keeps connected (pollers ask often). */
export async function topicEndOffsets(admin: Admin, topic: string): Promise<Map<number, { low: bigint; high: bigint }>> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return new Map(offsets.map((o) => [o.partition, { low: BigInt(o.low), high: BigInt(o.high) }]));
}

/** Sets a group's committed offsets (next offset to read) for partitions of a topic; the group must have no active member. */
export async function setGroupOffsets(kafka: Kafka, groupId: string, topic: string, offsets: { partition: number; offset: string }[]): Promise<void> {
  if (offsets.length === 0) return;
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.setOffsets({ groupId, topic, partitions: offsets });
  } finally {
    await admin.disconnect();
  }
}

/** max.message.bytes of each topic, as the broker has it (topic override or broker default). */
export async function fetchMessageLimits(admin: Admin, topics: readonly string[]): Promise<Record<string, number>> {
  const unique = [...new Set(topics)];
  if (unique.length === 0) return {};
  const { resources } = await admin.describeConfigs({
    includeSynonyms: false,
    resources: unique.map((name) => ({ type: kafkajs.ConfigResourceTypes.TOPIC, name, configNames: ['max.message.bytes'] })),
  });
  const limits: Record<string, number> = {};
  for (const r of resources) {
    const value = Number(r.configEntries.find((e) => e.configName === 'max.message.bytes')?.configValue);
    limits[r.resourceName] = Number.isFinite(value) && value > 0 ? value : DEFAULT_MAX_MESSAGE_BYTES;
  }
  return limits;
}

/** Partitions of each existing topic (missing topics are left out). */
export async function partitionCounts(kafka: Kafka, topics: string[]): Promise<Map<string, number>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fetchPartitionCounts(admin, topics);
  } finally {
    await admin.disconnect();
  }
}

/** Partitions of each existing topic, through a connected admin (missing topics are left out). */
export async function fetchPartitionCounts(admin: Admin, topics: readonly string[]): Promise<Map<string, number>> {
  const existing = new Set(await admin.listTopics());
  const wanted = [...new Set(topics)].filter((t) => existing.has(t));
  if (wanted.length === 0) return new Map();
  const { topics: meta } = await admin.fetchTopicMetadata({ topics: wanted });
  return new Map(meta.map((t) => [t.name, t.partitions.length]));
}
