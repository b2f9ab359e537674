import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { RecordSerde } from '../serde/serde.js';
import type { SchemaName } from '../serde/schemas.js';
import { headersToStrings } from './route.js';

/**
 * Reads a topic (a stage's changelog) from the beginning up to the end offsets seen at the start,
 * committed records only, and hands each decoded record to `onRecord` in offset order per partition.
 */
export async function restoreTopic(
  kafka: Kafka,
  serde: RecordSerde,
  topic: string,
  schema: SchemaName,
  onRecord: (key: string | null, value: unknown) => void,
  logger: Logger,
): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect());
  // lastOffset we must reach per partition; control records (transaction markers) count as reached.
  const pending = new Map(ends.filter((o) => BigInt(o.high) > BigInt(o.low)).map((o) => [o.partition, BigInt(o.high) - 1n]));
  if (pending.size === 0) return 0;
  const started = Date.now();
  const groupId = `magpie-restore-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, readUncommitted: false, allowAutoTopicCreation: false });
  let count = 0;
  let failure: unknown;
  const done = new Promise<void>((resolve) => {
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      if (payload.topic !== topic) return;
      const target = pending.get(payload.partition);
      if (target !== undefined && BigInt(payload.lastOffset) >= target) pending.delete(payload.partition);
      if (pending.size === 0) resolve();
    });
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          try {
            const value = await serde.decode(schema, m.value ?? null, headersToStrings(m.headers));
            onRecord(m.key?.toString() ?? null, value);
            count++;
          } catch (err) {
            failure ??= err;
          }
        }
      },
    });
    await done;
  } finally {
    await consumer.disconnect();
    const cleanup = kafka.admin();
    await cleanup.connect().then(() => cleanup.deleteGroups([groupId])).catch(() => undefined).finally(() => cleanup.disconnect());
  }
  if (failure) throw new Error(`cannot restore state from ${topic}: ${errorMessage(failure)}`);
  logger.info({ topic, records: count, ms: Date.now() - started }, 'state restored');
  return count;
}
