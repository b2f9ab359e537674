import { ConfigError, MagpieError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/logger.js';
import { loadTopologyFile, type Topology } from '../topology/load.js';

export interface GlobalOptions {
  brokers?: string;
  prefix?: string;
  logLevel?: string;
}

export function cliLogger(opts: GlobalOptions): Logger {
  return createLogger({ level: opts.logLevel ?? process.env.MAGPIE_LOG_LEVEL ?? 'info' });
}

/** Loads a topology with the global options applied; its warnings (e.g. an output nothing reads) go to the log. */
export async function loadTopology(file: string, opts: GlobalOptions): Promise<Topology> {
  const topology = await loadTopologyFile(file, {
    ...(opts.brokers ? { brokers: opts.brokers.split(',').map((b) => b.trim()) } : {}),
    ...(opts.prefix !== undefined ? { topicPrefix: opts.prefix } : {}),
  });
  if (topology.warnings.length) {
    const logger = cliLogger(opts);
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

/** Prints an error the way a user can act on it, and sets the exit code. */
export function reportError(err: unknown): void {
  if (err instanceof MagpieError) {
    process.stderr.write(`magpie: ${err.message}\n${err.code === 'CONFIG_INVALID' ? '' : `(code ${err.code})\n`}`);
  } else {
    process.stderr.write(`magpie: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
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
