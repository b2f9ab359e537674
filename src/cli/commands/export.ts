import type { Command } from 'commander';
import { Option } from 'commander';
import { ConfigError } from '../../core/errors.js';
import { EXPORT_FORMATS, REASONING_MODES, type ExportFormat, type ReasoningMode } from '../../export/formats.js';
import { SCHEMA_NAMES, type SchemaName } from '../../serde/schemas.js';
import { cliLogger, connectKafka, untilSignal, type GlobalOptions } from '../common.js';

interface ExportOptions {
  topic: string;
  format: ExportFormat;
  out?: string;
  parquet?: boolean;
  group?: string;
  schema?: string;
  follow?: boolean;
  outDir?: string;
  shardRecords?: string;
  shardBytes?: string;
  reasoning: ReasoningMode;
  longest?: string;
}

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** A positive whole number; sizes may end in k, m or g (binary units), e.g. 512m. */
function positive(flag: string, value: string, units = false): number {
  const m = /^(\d+)([kmg]?)i?b?$/i.exec(value.trim());
  const n = m && (units || !m[2]) ? Number(m[1]) * UNITS[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new ConfigError(`${flag}: '${value}' is not a positive whole number${units ? ' (k, m, g suffixes allowed)' : ''}`);
  return n;
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description('write a topic as training data (ShareGPT, OpenAI messages, Alpaca or DPO) to JSONL or Parquet: once up to the current end, or --follow into rotated shard files')
    .requiredOption('--topic <topic>', 'topic to export')
    .addOption(new Option('--format <format>', 'training-data layout').choices(EXPORT_FORMATS).default('sharegpt'))
    .option('--out <file>', 'file to write (Parquet when it ends in .parquet); written aside and renamed when complete')
    .option('--parquet', 'write Parquet whatever the file name')
    .option('--group <name>', 'start from this consumer group\'s committed offsets and commit the new ones once the output is on disk (a nightly export picks up only new records); --follow default: magpie-export.<topic>')
    .option('--schema <name>', `reader schema (default: the writer's, from the record headers): ${SCHEMA_NAMES.join(', ')}`)
    .option('--follow', 'keep consuming and write rotated shards into --out-dir')
    .option('--out-dir <dir>', 'with --follow: directory of the shard-NNNNNN.jsonl|parquet files')
    .option('--shard-records <n>', 'with --follow: records per shard')
    .option('--shard-bytes <size>', 'with --follow: shard size, e.g. 256m (JSON size of the rows for Parquet)')
    .addOption(new Option('--reasoning <mode>', "a reasoning model's thinking: drop it, or keep it as <think>…</think> before the first answer (and, in ShareGPT, a reasoning column)").choices(REASONING_MODES).default('drop'))
    .option('--longest <n>', 'keep only the records with the N longest responses, in topic order (the last step of the released Magpie filters); not with --follow')
    .addHelpText('after', `
Examples:
  magpie export --topic magpie.filtered --format sharegpt --out magpie-pro.jsonl
  magpie export --topic magpie.filtered --format openai --out nightly.parquet --group nightly-sft
  magpie export --topic magpie.preferences --format dpo --out dpo.jsonl
  magpie export --topic magpie.filtered --follow --out-dir shards/ --shard-records 100000 --parquet
  magpie export --topic magpie.filtered --longest 300000 --out magpie-pro-300k.jsonl
  magpie export --topic magpie.reasoning --format openai --reasoning keep --out reasoning-sft.jsonl`)
    .action(async (opts: ExportOptions) => {
      if (opts.schema !== undefined && !SCHEMA_NAMES.includes(opts.schema as SchemaName)) throw new ConfigError(`--schema: '${opts.schema}' is not one of ${SCHEMA_NAMES.join(', ')}`);
      if (opts.follow ? opts.out !== undefined || !opts.outDir : opts.out === undefined || opts.outDir !== undefined) {
        throw new ConfigError('give --out FILE for an export up to the current end, or --follow --out-dir DIR with --shard-records or --shard-bytes');
      }
      if (opts.follow && opts.longest !== undefined) throw new ConfigError('--longest needs the whole topic: use it with --out, not --follow');
      const global = program.opts<GlobalOptions>();
      const logger = await cliLogger(global);
      const { kafka, serde } = await connectKafka(global, logger);
      const [{ exportTopic }, { readProgress }, { fileKindOf }, { followToShards }, { describeSummary }] = await Promise.all([
        import('../../export/export-topic.js'),
        import('../../export/progress.js'),
        import('../../export/row-writer.js'),
        import('../../export/shard-follower.js'),
        import('../../export/training-rows.js'),
      ]);
      const common = { kafka, serde, logger, topic: opts.topic, format: opts.format, formatOptions: { reasoning: opts.reasoning }, ...(opts.schema ? { schema: opts.schema as SchemaName } : {}) };
      try {
        if (opts.follow) {
          const follower = await followToShards({
            ...common,
            dir: opts.outDir!,
            kind: opts.parquet ? 'parquet' : 'jsonl',
            groupId: opts.group ?? `magpie-export.${opts.topic}`,
            ...(opts.shardRecords ? { shardRecords: positive('--shard-records', opts.shardRecords) } : {}),
            ...(opts.shardBytes ? { shardBytes: positive('--shard-bytes', opts.shardBytes, true) } : {}),
          });
          const summary = await Promise.race([follower.done, untilSignal(logger).then(() => follower.stop())]);
          process.stderr.write(`export: ${describeSummary(summary)}\n`);
        } else {
          const stop = new AbortController();
          process.once('SIGINT', () => stop.abort());
          const summary = await exportTopic({
            ...common,
            out: opts.out!,
            kind: fileKindOf(opts.out!, opts.parquet),
            ...(opts.group ? { groupId: opts.group } : {}),
            ...(opts.longest ? { longest: positive('--longest', opts.longest) } : {}),
            progress: readProgress(logger, { tty: Boolean(process.stderr.isTTY), label: `export ${opts.topic}` }),
            signal: stop.signal,
          });
          process.stderr.write(`export${summary.interrupted ? ' (interrupted: the records read so far)' : ''}: ${describeSummary(summary)} (${opts.out})\n`);
        }
      } finally {
        await serde.close();
      }
      process.exit(process.exitCode ?? 0);
    });
}
