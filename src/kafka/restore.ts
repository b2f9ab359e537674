import { errorMessage } from '../core/errors.js';
import type { Kafka } from 'kafkajs';
import type { Logger } from '../core/logger.js';
import type { RecordSerde } from '../serde/serde.js';
import type { SchemaName } from '../serde/schemas.js';
import { readTopic } from './read-topic.js';

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
  const started = Date.now();
  let count = 0;
  let failure: unknown;
  await readTopic(kafka, topic, async (raw) => {
    try {
      onRecord(raw.key?.toString() ?? null, await serde.decode(schema, raw.value, raw.headers));
      count++;
    } catch (err) {
      failure ??= err;
    }
  });
  if (failure) throw new Error(`cannot restore state from ${topic}: ${errorMessage(failure)}`);
  if (count > 0) logger.info({ topic, records: count, ms: Date.now() - started }, 'state restored');
  return count;
}
