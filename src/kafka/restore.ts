import { ConfigError, errorMessage } from '../core/errors.js';
import type { Kafka } from 'kafkajs';
import type { Logger } from '../core/logger.js';
import type { ChangelogRead, StateRestorer } from '../processors/stage.js';
import type { RecordSerde } from '../serde/serde.js';
import type { SchemaName } from '../serde/schemas.js';
import { readTopic } from './read-topic.js';
import type { RouteTarget } from './route.js';

/**
 * Reads a stage's changelog topic (one partition) from `from` (default: its beginning) up to the end offset
 * seen at the start, committed records only, and hands each decoded record to `onRecord` in offset order.
 */
export async function restoreTopic(
  kafka: Kafka,
  serde: RecordSerde,
  topic: string,
  schema: SchemaName,
  onRecord: (key: string | null, value: unknown, offset: bigint) => void | Promise<void>,
  logger: Logger,
  from?: bigint,
): Promise<ChangelogRead> {
  const started = Date.now();
  let count = 0;
  let next = from ?? 0n;
  let failure: unknown;
  await readTopic(
    kafka,
    topic,
    async (raw) => {
      if (failure) return;
      try {
        await onRecord(raw.key?.toString() ?? null, await serde.decode(schema, raw.value, raw.headers), BigInt(raw.offset));
        count++;
      } catch (err) {
        failure = err;
      }
    },
    {
      ...(from === undefined ? {} : { from }),
      onStart: (ranges) => {
        // Offsets order a changelog only within one partition.
        if (ranges.length !== 1) throw new ConfigError(`changelog topic ${topic} has ${ranges.length} partitions; a changelog needs exactly 1: delete it (the stage rebuilds it from its input) or recreate it with one partition`, { topic });
        if (ranges[0]!.end > next) next = ranges[0]!.end;
      },
    },
  );
  if (failure) throw failure instanceof ConfigError ? failure : new Error(`cannot restore state from ${topic}: ${errorMessage(failure)}`);
  if (count > 0) logger.info({ topic, records: count, from: from?.toString(), ms: Date.now() - started }, 'state restored');
  return { records: count, next };
}

/** Reads a stage's (or source's) own ports back: what StateRestorer hands its init and onAssigned. */
export function portRestorer(kafka: Kafka, serde: RecordSerde, target: Pick<RouteTarget, 'name' | 'ports' | 'portSchemas'>, logger: Logger): StateRestorer {
  const topicOf = (port: string) => {
    const topic = target.ports[port];
    if (!topic) throw new Error(`stage ${target.name} has no port '${port}'`);
    return topic;
  };
  return {
    topicOf,
    restore: (port, onRecord, from) => {
      const schema = target.portSchemas[port];
      if (!schema) throw new Error(`stage ${target.name} has no port '${port}' to restore from`);
      return restoreTopic(kafka, serde, topicOf(port), schema, onRecord, logger, from);
    },
  };
}
