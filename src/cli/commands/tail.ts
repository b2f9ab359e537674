import type { Command } from 'commander';
import { SCHEMA_NAMES, type SchemaName } from '../../serde/schemas.js';
import { cliLogger, connectKafka, type GlobalOptions } from '../common.js';

interface TailOptions {
  follow?: boolean;
  max?: string;
  schema?: string;
  meta?: boolean;
}

export function registerTail(program: Command): void {
  program
    .command('tail')
    .alias('consume')
    .description('print the records of a topic as JSON lines, decoded from Avro (from the beginning to the current end, or --follow)')
    .argument('<topic>', 'topic name')
    .option('-f, --follow', 'keep printing new records')
    .option('-n, --max <count>', 'stop after this many records')
    .option('--schema <name>', `reader schema (default: the writer's, from the record headers): ${SCHEMA_NAMES.join(', ')}`)
    .option('--meta', 'wrap each record with its partition, offset and key')
    .action(async (topic: string, opts: TailOptions) => {
      const global = program.opts<GlobalOptions>();
      const logger = await cliLogger(global);
      const { kafka, serde } = await connectKafka(global, logger);
      const { readTopic } = await import('../../kafka/read-topic.js');
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      try {
        await readTopic(
          kafka,
          topic,
          async (raw) => {
            const schema = (opts.schema ?? raw.headers['magpie-schema']) as SchemaName | undefined;
            let line: unknown;
            try {
              if (!schema || !SCHEMA_NAMES.includes(schema)) throw new Error(`no reader schema: pass --schema (one of ${SCHEMA_NAMES.join(', ')})`);
              const value = await serde.decode(schema, raw.value, raw.headers);
              line = opts.meta ? { partition: raw.partition, offset: raw.offset, key: raw.key?.toString() ?? null, value } : value;
            } catch (err) {
              line = { partition: raw.partition, offset: raw.offset, error: (err as Error).message };
            }
            process.stdout.write(`${JSON.stringify(line, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('base64') : v))}\n`);
          },
          { follow: Boolean(opts.follow), ...(opts.max ? { max: Number(opts.max) } : {}), signal: controller.signal },
        );
      } finally {
        await serde.close();
      }
    });
}
