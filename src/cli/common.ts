// Imported by every command definition, so by `magpie --help`: only light modules at the top; the rest
// (kafkajs, the topology loader and with it every processor) is loaded by the commands that use it.
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Kafka } from 'kafkajs';
import type { RecordSerde } from '../serde/serde.js';
import type { Topology } from '../topology/load.js';
import { describeFailure } from './failures.js';
import type { LogFormat } from './output-formats.js';

export interface GlobalOptions {
  brokers?: string;
  prefix?: string;
  logLevel?: string;
  logFormat?: LogFormat;
  verbose?: boolean;
}

/** Human-readable on a terminal, JSON lines when piped or with --log-format json. */
export async function cliLogger(opts: GlobalOptions): Promise<Logger> {
  const { createCliLogger, logFormatFor } = await import('./output.js');
  return createCliLogger({ level: opts.logLevel ?? process.env.MAGPIE_LOG_LEVEL ?? 'info', format: logFormatFor(opts.logFormat, process.stderr) });
}

/** Loads a topology with the global options applied; its warnings (e.g. an output nothing reads) go to the log. */
export async function loadTopology(file: string, opts: GlobalOptions): Promise<Topology> {
  const { loadTopologyFile } = await import('../topology/load.js');
  const topology = await loadTopologyFile(file, {
    ...(opts.brokers ? { brokers: opts.brokers.split(',').map((b) => b.trim()) } : {}),
    ...(opts.prefix !== undefined ? { topicPrefix: opts.prefix } : {}),
  });
  if (topology.warnings.length) {
    const logger = await cliLogger(opts);
    for (const warning of topology.warnings) logger.warn(warning);
  }
  return topology;
}

/** Brokers from --brokers, else KAFKA_BROKERS, else the local broker's default address. */
export function brokersFrom(opts: GlobalOptions): string[] {
  const list = opts.brokers ?? process.env.KAFKA_BROKERS;
  if (!list) throw new ConfigError('no Kafka brokers: pass --brokers host:port or set KAFKA_BROKERS (the local broker prints its address: bash scripts/kafka.sh bootstrap)');
  return list.split(',').map((b) => b.trim()).filter(Boolean);
}

/**
 * A Kafka client and record serde for the brokers of --brokers/KAFKA_BROKERS, after checking that a broker
 * answers (a missing broker is one line saying how to start one, not half a minute of retries).
 */
export async function connectKafka(opts: GlobalOptions, logger: Logger): Promise<{ kafka: Kafka; serde: RecordSerde }> {
  const brokers = brokersFrom(opts);
  const [{ probeBrokers }, { createKafka }, { createKafkaSerde }, { kafkaConfigSchema, serdeConfigSchema }] = await Promise.all([
    import('../kafka/probe.js'),
    import('../kafka/client.js'),
    import('../kafka/schema-store.js'),
    import('../topology/schema.js'),
  ]);
  await probeBrokers(brokers);
  const kafka = createKafka(kafkaConfigSchema.parse({ brokers }), logger);
  return { kafka, serde: createKafkaSerde(kafka, serdeConfigSchema.parse({}), logger) };
}

/** Checks, before anything connects, that the topology's brokers (and schema registry, if any) answer. */
export async function probeTopology(topology: Topology): Promise<void> {
  const [{ probeBrokers }, { probeSchemaRegistry }] = await Promise.all([import('../kafka/probe.js'), import('../serde/registry-probe.js')]);
  await probeBrokers(topology.kafka.brokers);
  if (topology.serde.registry) await probeSchemaRegistry(topology.serde.registry.url);
}

/**
 * Prints an error the way a user can act on it: one line saying what failed and what to do; the stack and
 * causes only with --verbose. Sets the exit code (2 for bad configuration, else 1).
 */
export function reportError(err: unknown, verbose = false): void {
  const failure = describeFailure(err);
  process.stderr.write(`magpie: ${failure.message}${failure.code && failure.code !== 'CONFIG_INVALID' ? ` (${failure.code})` : ''}\n`);
  if (verbose) {
    for (let e: unknown = err; e !== undefined; e = e instanceof Error ? e.cause : undefined) {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    }
  } else if (!failure.known) {
    process.stderr.write('(run with --verbose for the stack trace)\n');
  }
  process.exitCode = err instanceof ConfigError ? 2 : 1;
}

/** Resolves on the first SIGINT/SIGTERM; a second one exits at once. */
export function untilSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const handler = (signal: NodeJS.Signals) => {
      if (seen) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(130);
      }
      seen = true;
      logger.info({ signal }, 'shutting down: finishing work in flight (signal again to exit at once)');
      resolve(signal);
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  });
}
