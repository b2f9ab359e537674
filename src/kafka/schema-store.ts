import type { Kafka, Producer } from 'kafkajs';
import { SerdeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { createSerde, type RecordSerde, type SerdeConfig } from '../serde/serde.js';
import type { SchemaStore } from '../serde/schema-store.js';
import { ensureTopics } from './admin.js';
import { readTopic } from './read-topic.js';

const DEFAULT_SCHEMA_TOPIC = '_magpie-schemas';

export interface KafkaSchemaStoreOptions {
  /** Compacted topic holding writer schemas, keyed by fingerprint. Default `_magpie-schemas`. */
  topic?: string;
  /** Used when this store creates the topic; default -1, the broker's default.replication.factor. */
  replicationFactor?: number;
  /** Longest a re-read of the topic may take. Default 30 s. */
  refreshTimeoutMs?: number;
  /**
   * How long a fingerprint that a re-read did not find is answered "unknown" without reading again,
   * so a run of foreign records costs one re-read, not one each. Default 10 s.
   */
  missRetryMs?: number;
  logger?: Logger;
}

/**
 * Writer schemas in a compacted Kafka topic (key = fingerprint, value = schema JSON), so any process
 * can read what any other process wrote. Reads happen only on a fingerprint this process has not seen:
 * the producer stores a schema, acks=all, before its first record, so one re-read that starts after
 * such a record arrived always finds its schema.
 */
export class KafkaSchemaStore implements SchemaStore {
  private readonly topic: string;
  private readonly schemas = new Map<string, string>();
  private readonly missedAt = new Map<string, number>();
  private topicReady: Promise<void> | undefined;
  private producer: Promise<Producer> | undefined;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly options: KafkaSchemaStoreOptions = {},
  ) {
    this.topic = options.topic ?? DEFAULT_SCHEMA_TOPIC;
  }

  async put(fingerprint: string, schemaJson: string): Promise<void> {
    await this.ensureTopic();
    const producer = await this.connectedProducer();
    await producer.send({ topic: this.topic, acks: -1, messages: [{ key: fingerprint, value: schemaJson }] });
    this.schemas.set(fingerprint, schemaJson);
    this.options.logger?.info({ topic: this.topic, fingerprint }, 'published writer schema');
  }

  async get(fingerprint: string): Promise<string | undefined> {
    const known = this.schemas.get(fingerprint);
    if (known !== undefined) return known;
    const missed = this.missedAt.get(fingerprint);
    if (missed !== undefined && Date.now() - missed < (this.options.missRetryMs ?? 10_000)) return undefined;
    // A read under way may have fixed its end offsets before this schema was written: wait for it,
    // then read again only if it did not bring the schema (callers resuming together share that read).
    if (this.reading) await this.reading.catch(() => undefined);
    if (!this.schemas.has(fingerprint)) {
      this.reading ??= this.readAll().finally(() => {
        this.reading = undefined;
      });
      await this.reading;
    }
    const found = this.schemas.get(fingerprint);
    if (found === undefined) this.missedAt.set(fingerprint, Date.now());
    else this.missedAt.delete(fingerprint);
    return found;
  }

  async close(): Promise<void> {
    const producer = this.producer;
    this.producer = undefined;
    if (producer) await producer.then((p) => p.disconnect()).catch(() => undefined);
  }

  /** Reads the topic up to the end offsets it has when the read starts. */
  private async readAll(): Promise<void> {
    await this.ensureTopic();
    const timeoutMs = this.options.refreshTimeoutMs ?? 30_000;
    const signal = AbortSignal.timeout(timeoutMs);
    const count = await readTopic(
      this.kafka,
      this.topic,
      (raw) => {
        if (raw.key !== null && raw.value !== null) this.schemas.set(raw.key.toString(), raw.value.toString());
      },
      { signal },
    );
    if (signal.aborted) {
      throw new SerdeError('SERDE_REGISTRY', `reading schema store topic ${this.topic} took longer than ${timeoutMs} ms: check the Kafka connection.`, {
        retryable: true,
        details: { topic: this.topic },
      });
    }
    this.options.logger?.debug({ topic: this.topic, records: count }, 'read schema store');
  }

  private ensureTopic(): Promise<void> {
    this.topicReady ??= ensureTopics(this.kafka, [{ name: this.topic, partitions: 1, replicationFactor: this.options.replicationFactor ?? -1, compacted: true }], this.options.logger).then(
      () => undefined,
      (err: unknown) => {
        this.topicReady = undefined;
        throw err;
      },
    );
    return this.topicReady;
  }

  private connectedProducer(): Promise<Producer> {
    if (this.producer === undefined) {
      const producer = this.kafka.producer({ allowAutoTopicCreation: false });
      this.producer = producer.connect().then(
        () => producer,
        (err: unknown) => {
          this.producer = undefined;
          throw err;
        },
      );
    }
    return this.producer;
  }
}

/**
 * The serde of a process that talks to Kafka: the Confluent format when the config names a registry, else the
 * embedded format with writer schemas in the config's schema topic.
 */
export function createKafkaSerde(kafka: Kafka, config: SerdeConfig, logger?: Logger): RecordSerde {
  if (config.registry) return createSerde({ config });
  return createSerde({ config, schemaStore: new KafkaSchemaStore(kafka, { topic: config.schemaTopic, logger: logger?.child({ component: 'serde' }) }) });
}
