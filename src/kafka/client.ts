import { readFileSync } from 'node:fs';
import { Kafka, logLevel, type KafkaConfig as KafkaJsConfig, type Producer, type ProducerConfig, type SASLOptions } from 'kafkajs';
import { ConfigError } from '../core/errors.js';
import { registerSecret, type Logger } from '../core/logger.js';
import { readSecretFile } from '../core/secrets.js';
import type { KafkaConfig } from '../topology/schema.js';

// kafkajs logs at ERROR what it then retries (leader moves, concurrent transactions); the runner logs real failures.
const LEVELS: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'warn',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

function readSecret(envName: string | undefined, file: string | undefined, field: string, logger: Logger): string {
  if (envName) {
    const value = process.env[envName];
    if (value) return value;
    if (!file) throw new ConfigError(`${field}: environment variable ${envName} is not set`);
  }
  if (file) return readSecretFile(file, field, logger);
  throw new ConfigError(`${field}: no secret source given`);
}

/**
 * Retries of idempotent and transactional producers: unbounded, as kafkajs requires for exactly-once (it warns
 * about any limit), each wait capped, so a send outlives a broker restart instead of failing the batch. The first
 * wait is short: back-to-back transactions of one producer meet CONCURRENT_TRANSACTIONS until the previous
 * one's markers are written, a few milliseconds later.
 */
export const PRODUCER_RETRY = { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 20, maxRetryTime: 5_000 } as const;

/**
 * Every producer of the project: idempotent (transactional when given an id), one request in flight for
 * transactions, retries as PRODUCER_RETRY.
 */
export function createProducer(kafka: Kafka, options: { idempotent?: boolean; transactionalId?: string; transactionTimeout?: number }): Producer {
  const config: ProducerConfig = { idempotent: true, retry: PRODUCER_RETRY, allowAutoTopicCreation: false, maxInFlightRequests: 5 };
  if (options.transactionalId) Object.assign(config, { transactionalId: options.transactionalId, maxInFlightRequests: 1, transactionTimeout: options.transactionTimeout ?? 60_000 });
  return kafka.producer(config);
}

const ROUTINE_RETRIES = /another concurrent operation on the same transaction|coordinator is loading|group coordinator is not available|unstable offsets that need to be cleared/i;

/** Translates the topology's kafka block into a kafkajs client that logs through pino. */
export function createKafka(config: KafkaConfig, logger: Logger): Kafka {
  // Records are keyed by uuid; kafkajs' current default partitioner (murmur2, like the Java client) is wanted.
  process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';
  const kafkaLogger = logger.child({ component: 'kafkajs' });
  const options: KafkaJsConfig = {
    clientId: config.clientId,
    brokers: config.brokers,
    connectionTimeout: config.connectionTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    retry: { retries: 8, initialRetryTime: 200, maxRetryTime: 10_000 },
    logLevel: logLevel.WARN,
    logCreator: () => ({ level, log }) => {
      const { message, timestamp: _t, logger: _l, ...extra } = log as unknown as Record<string, unknown>;
      // Answers retried by design (back-to-back transactions, a coordinator loading after a start, offsets a
      // transaction is still settling: stable-offsets.ts) are not worth a warning to a person watching the feed.
      const routine = ROUTINE_RETRIES.test(`${String(message)} ${String(extra['error'] ?? '')}`);
      kafkaLogger[routine ? 'debug' : (LEVELS[level] ?? 'info')](extra, String(message));
    },
  };
  if (config.ssl) {
    options.ssl = config.ssl === true
      ? true
      : {
          rejectUnauthorized: config.ssl.rejectUnauthorized,
          ...(config.ssl.caFile ? { ca: [readFileSync(config.ssl.caFile, 'utf8')] } : {}),
          ...(config.ssl.certFile ? { cert: readFileSync(config.ssl.certFile, 'utf8') } : {}),
          ...(config.ssl.keyFile ? { key: readFileSync(config.ssl.keyFile, 'utf8') } : {}),
        };
  }
  if (config.sasl) {
    const password = readSecret(config.sasl.passwordEnv, config.sasl.passwordFile, 'kafka.sasl', logger);
    registerSecret(password);
    options.sasl = { mechanism: config.sasl.mechanism, username: config.sasl.username, password } as SASLOptions;
  }
  return new Kafka(options);
}
