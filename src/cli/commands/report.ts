import { rename, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ConfigError } from '../../core/errors.js';
import { SCHEMA_NAMES, type SchemaName } from '../../serde/schemas.js';
import { cliLogger, connectKafka, untilSignal, type GlobalOptions } from '../common.js';

interface ReportOptions {
  topic: string;
  rejects?: string;
  deadLetter?: string;
  out?: string;
  schema?: string;
  title?: string;
  serve?: boolean;
  port: string;
  host: string;
  refresh: string;
}

const REPORTED: readonly SchemaName[] = ['magpie.Conversation', 'magpie.Instruction', 'magpie.PreferencePair'];

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('write a self-contained HTML data report of a topic: counts, tag distributions, length, distance and reward histograms, reject reasons, throughput; or --serve it live as the topics grow')
    .requiredOption('--topic <topic>', 'topic of conversations (or instructions, or preference pairs) to report on')
    .option('--rejects <topic>', 'rejects topic: reject reasons by rule')
    .option('--dead-letter <topic>', 'dead-letter topic: failures by code')
    .option('--out <file>', 'HTML file to write (from the beginning to the current end)')
    .option('--serve', 'serve the report on --port, following the topics: an open page updates itself as records arrive')
    .option('--port <port>', 'with --serve: port to listen on', '8080')
    .option('--host <address>', 'with --serve: address to listen on', '127.0.0.1')
    .option('--refresh <seconds>', 'with --serve: how often an open page updates', '2')
    .option('--schema <name>', `reader schema of --topic (default: the writer's, from the record headers): ${REPORTED.join(', ')}`)
    .option('--title <text>', 'page title (default: "Magpie data report: <topic>")')
    .action(async (opts: ReportOptions) => {
      if (opts.schema !== undefined && !REPORTED.includes(opts.schema as SchemaName)) {
        throw new ConfigError(`--schema: '${opts.schema}' is not reported on (one of ${REPORTED.join(', ')}; all schemas: ${SCHEMA_NAMES.join(', ')})`);
      }
      if ((opts.out === undefined) === !opts.serve) throw new ConfigError('give --out FILE for a report file, or --serve for a live page (not both)');
      const port = Number(opts.port);
      const refresh = Number(opts.refresh);
      if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new ConfigError(`--port: '${opts.port}' is not a port number`);
      if (!(refresh > 0)) throw new ConfigError(`--refresh: '${opts.refresh}' is not a positive number of seconds`);
      const global = program.opts<GlobalOptions>();
      const logger = await cliLogger(global);
      const { kafka, serde } = await connectKafka(global, logger);
      const title = opts.title ?? `Magpie data report: ${opts.topic}`;
      if (opts.serve) {
        const { serveLiveReport } = await import('../../report/live.js');
        const live = await serveLiveReport(kafka, serde, {
          topic: opts.topic, rejects: opts.rejects, deadLetter: opts.deadLetter, schema: opts.schema as SchemaName | undefined, title,
          port, host: opts.host, refreshMs: refresh * 1000, logger,
        });
        process.stderr.write(`report: live at ${live.url} (Ctrl-C to stop)\n`);
        await Promise.race([untilSignal(logger), live.failed.then((err) => {
          process.exitCode = 1;
          logger.error({ err: err.message }, 'live report stopped');
        })]);
        await live.close();
        await serde.close();
        process.exit(process.exitCode ?? 0);
      }
      const [{ collectReport }, { renderReport }] = await Promise.all([import('../../report/collect.js'), import('../../report/html.js')]);
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      try {
        const data = await collectReport(kafka, serde, {
          topic: opts.topic,
          rejects: opts.rejects,
          deadLetter: opts.deadLetter,
          schema: opts.schema as SchemaName | undefined,
          title,
          signal: controller.signal,
          onTopicRead: (topic, count) => logger.info({ topic, records: count }, 'read topic'),
        });
        // Written aside and renamed, so a reader never sees half a page.
        const partial = `${opts.out!}.partial`;
        await writeFile(partial, renderReport(data));
        await rename(partial, opts.out!);
        const t = data.totals;
        process.stderr.write(`report: ${t.records} records, ${t.rejects} rejects, ${t.deadLetters} dead letters${t.undecodable ? `, ${t.undecodable} undecodable` : ''} → ${opts.out}\n`);
      } finally {
        await serde.close();
      }
    });
}
