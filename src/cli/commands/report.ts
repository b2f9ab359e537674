import { rename, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ConfigError } from '../../core/errors.js';
import { createKafka } from '../../kafka/client.js';
import { collectReport } from '../../report/collect.js';
import { renderReport } from '../../report/html.js';
import { SCHEMA_NAMES, type SchemaName } from '../../serde/schemas.js';
import { createKafkaSerde } from '../../kafka/schema-store.js';
import { kafkaConfigSchema, serdeConfigSchema } from '../../topology/schema.js';
import { brokersFrom, cliLogger, type GlobalOptions } from '../common.js';

interface ReportOptions {
  topic: string;
  rejects?: string;
  deadLetter?: string;
  out: string;
  schema?: string;
  title?: string;
}

const REPORTED: readonly SchemaName[] = ['magpie.Conversation', 'magpie.Instruction', 'magpie.PreferencePair'];

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('write a self-contained HTML data report of a topic: counts, tag distributions, length, distance and reward histograms, reject reasons, throughput')
    .requiredOption('--topic <topic>', 'topic of conversations (or instructions, or preference pairs) to report on')
    .option('--rejects <topic>', 'rejects topic: reject reasons by rule')
    .option('--dead-letter <topic>', 'dead-letter topic: failures by code')
    .requiredOption('--out <file>', 'HTML file to write')
    .option('--schema <name>', `reader schema of --topic (default: the writer's, from the record headers): ${REPORTED.join(', ')}`)
    .option('--title <text>', 'page title (default: "Magpie data report: <topic>")')
    .action(async (opts: ReportOptions) => {
      if (opts.schema !== undefined && !REPORTED.includes(opts.schema as SchemaName)) {
        throw new ConfigError(`--schema: '${opts.schema}' is not reported on (one of ${REPORTED.join(', ')}; all schemas: ${SCHEMA_NAMES.join(', ')})`);
      }
      const global = program.opts<GlobalOptions>();
      const logger = cliLogger(global);
      const kafka = createKafka(kafkaConfigSchema.parse({ brokers: brokersFrom(global) }), logger);
      const serde = createKafkaSerde(kafka, serdeConfigSchema.parse({}), logger);
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      try {
        const data = await collectReport(kafka, serde, {
          topic: opts.topic,
          rejects: opts.rejects,
          deadLetter: opts.deadLetter,
          schema: opts.schema as SchemaName | undefined,
          title: opts.title ?? `Magpie data report: ${opts.topic}`,
          signal: controller.signal,
          onTopicRead: (topic, count) => logger.info({ topic, records: count }, 'read topic'),
        });
        // Written aside and renamed, so a reader never sees half a page.
        const partial = `${opts.out}.partial`;
        await writeFile(partial, renderReport(data));
        await rename(partial, opts.out);
        const t = data.totals;
        process.stderr.write(`report: ${t.records} records, ${t.rejects} rejects, ${t.deadLetters} dead letters${t.undecodable ? `, ${t.undecodable} undecodable` : ''} → ${opts.out}\n`);
      } finally {
        await serde.close();
      }
    });
}
