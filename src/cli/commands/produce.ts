import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { RecordError } from '../../core/errors.js';
import { fetchMessageLimits, fetchPartitionCounts } from '../../kafka/admin.js';
import { createProducer } from '../../kafka/client.js';
import { largestMessage, messageBytes, sendLanes, type OutboundMessage } from '../../kafka/send-plan.js';
import { SCHEMA_NAMES, type SchemaName } from '../../serde/schemas.js';
import { cliLogger, connectKafka, type GlobalOptions } from '../common.js';

export function registerProduce(program: Command): void {
  program
    .command('produce')
    .description('encode JSON lines (stdin or --file) as Avro records of --schema and write them to a topic')
    .argument('<topic>', 'topic name')
    .requiredOption('--schema <name>', `record schema: ${SCHEMA_NAMES.join(', ')}`)
    .option('--file <path>', 'read JSON lines from this file instead of stdin')
    .option('--key <field>', 'use this field of each record as the message key', 'uuid')
    .action(async (topic: string, opts: { schema: string; file?: string; key: string }) => {
      if (!SCHEMA_NAMES.includes(opts.schema as SchemaName)) throw new RecordError('CLI_BAD_SCHEMA', `--schema: unknown schema '${opts.schema}' (one of ${SCHEMA_NAMES.join(', ')})`);
      const global = program.opts<GlobalOptions>();
      const logger = await cliLogger(global);
      const { kafka, serde } = await connectKafka(global, logger);
      const admin = kafka.admin();
      await admin.connect();
      const limit = (await fetchMessageLimits(admin, [topic]))[topic]!;
      const partitions = await fetchPartitionCounts(admin, [topic]);
      await admin.disconnect();
      const producer = createProducer(kafka, { idempotent: true });
      await producer.connect();
      const lines = createInterface({ input: opts.file ? createReadStream(opts.file) : process.stdin, crlfDelay: Infinity });
      let n = 0;
      let batch: OutboundMessage[] = [];
      // Each send fits the topic's max.message.bytes, whatever the records' sizes, and goes to one partition.
      const flush = async () => {
        await sendLanes((topicMessages) => producer.sendBatch({ topicMessages, acks: -1 }), new Map([[topic, batch]]), () => limit, (t) => partitions.get(t));
        batch = [];
      };
      try {
        for await (const line of lines) {
          n++;
          if (!line.trim()) continue;
          let value: Record<string, unknown>;
          try {
            value = JSON.parse(line) as Record<string, unknown>;
          } catch (err) {
            throw new RecordError('CLI_BAD_JSON', `line ${n}: not JSON: ${(err as Error).message}`);
          }
          const encoded = await serde.encode(opts.schema as SchemaName, value, topic).catch((err: Error) => {
            throw new RecordError('CLI_BAD_RECORD', `line ${n}: ${err.message}`);
          });
          const key = value[opts.key];
          const message = { key: typeof key === 'string' ? key : null, value: encoded.value, headers: encoded.headers };
          if (messageBytes(message) > largestMessage(limit)) {
            throw new RecordError('CLI_RECORD_TOO_LARGE', `line ${n}: the record is ${encoded.value.length} bytes, more than topic ${topic} takes (max.message.bytes ${limit})`);
          }
          batch.push(message);
          if (batch.length >= 500) await flush();
        }
        await flush();
        process.stderr.write(`produced ${n} line(s) to ${topic}\n`);
      } finally {
        await producer.disconnect();
        await serde.close();
      }
    });
}
