import type { Kafka } from 'kafkajs';
import { errorCode, errorMessage } from '../core/errors.js';
import { readTopic } from '../kafka/read-topic.js';
import type { RawRecord } from '../kafka/route.js';
import type { DeadLetter, Rejected } from '../serde/records.generated.js';
import { SCHEMA_NAMES, type SchemaName } from '../serde/schemas.js';
import { SCHEMA_HEADER, type RecordSerde } from '../serde/serde.js';
import { ReportAggregator, type ReportData, type ReportSources } from './aggregate.js';

export interface CollectOptions extends ReportSources {
  /** Reader schema of `topic`; default: the writer's, from the record headers, else magpie.Conversation. */
  schema?: SchemaName | undefined;
  title: string;
  signal?: AbortSignal;
  /** Called after each topic with the records read from it. */
  onTopicRead?: (topic: string, count: number) => void;
}

/** Reads the topic (and its rejects and dead letters) from the beginning to the current end into a report. */
export async function collectReport(kafka: Kafka, serde: RecordSerde, options: CollectOptions): Promise<ReportData> {
  const aggregator = new ReportAggregator({ topic: options.topic, rejects: options.rejects, deadLetter: options.deadLetter });
  for (const read of reportReaders(kafka, serde, aggregator, options, false)) await read();
  return aggregator.result(options.title, Date.now());
}

/**
 * One reader per source topic, each feeding the aggregator: to the current end, or following new records
 * (the live report). The static and the live report aggregate with the same code.
 */
export function reportReaders(kafka: Kafka, serde: RecordSerde, aggregator: ReportAggregator, options: Omit<CollectOptions, 'title'>, follow: boolean): (() => Promise<void>)[] {
  const read = (topic: string, schemaOf: (raw: RawRecord) => SchemaName, add: (schema: SchemaName, value: unknown) => void) => async () => {
    const count = await readTopic(kafka, topic, async (raw) => {
      const source = { topic: raw.topic, partition: raw.partition, offset: raw.offset };
      try {
        const schema = schemaOf(raw);
        add(schema, await serde.decode(schema, raw.value, raw.headers, source));
      } catch (err) {
        aggregator.addUndecodable(topic, errorCode(err), `${raw.topic}[${raw.partition}]@${raw.offset}: ${errorMessage(err)}`);
      }
    }, { follow, ...(options.signal ? { signal: options.signal } : {}) });
    options.onTopicRead?.(topic, count);
  };
  const written = (raw: RawRecord): SchemaName => {
    const header = raw.headers[SCHEMA_HEADER];
    return options.schema ?? (SCHEMA_NAMES.includes(header as SchemaName) ? (header as SchemaName) : 'magpie.Conversation');
  };
  return [
    read(options.topic, written, (schema, value) => aggregator.add(schema, value)),
    ...(options.rejects ? [read(options.rejects, () => 'magpie.Rejected', (_, value) => aggregator.addReject(value as Rejected))] : []),
    ...(options.deadLetter ? [read(options.deadLetter, () => 'magpie.DeadLetter', (_, value) => aggregator.addDeadLetter(value as DeadLetter))] : []),
  ];
}
