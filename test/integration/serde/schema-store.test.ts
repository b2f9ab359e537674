import { ConfigResourceTypes, Kafka, logLevel } from 'kafkajs';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import type { Logger } from '../../../src/core/logger.js';
import { SerdeError } from '../../../src/core/errors.js';
import { createKafkaSerde, KafkaSchemaStore } from '../../../src/kafka/schema-store.js';
import type { SchemaSet } from '../../../src/serde/avro.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { createSerde, FINGERPRINT_HEADER, type RecordSerde } from '../../../src/serde/serde.js';
import { uniquePrefix } from '../../support/broker.js';
import { conversation, NEW_TAG_FIELD, schemasWithConversationField } from '../../unit/serde/fixtures.js';

const bootstrap = inject('kafkaBootstrap');
/** One client per simulated process, so nothing is shared but the broker. */
const newKafka = () => new Kafka({ clientId: 'serde-test', brokers: bootstrap.split(','), logLevel: logLevel.NOTHING });
const open: RecordSerde[] = [];
const topics: string[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
  const admin = newKafka().admin();
  await admin.connect();
  await admin.deleteTopics({ topics: topics.splice(0) }).finally(() => admin.disconnect());
});

/** A schema store topic of this test's own, deleted after it. */
function schemaTopicFor(testName: string): string {
  const topic = `${uniquePrefix(testName)}._magpie-schemas`;
  topics.push(topic);
  return topic;
}

function serde(...args: Parameters<typeof createSerde>): RecordSerde {
  const s = createSerde(...args);
  open.push(s);
  return s;
}

/** A serde of its own process: its own client, only the schema store topic in common. */
function kafkaSerde(schemaTopic: string, schemas?: SchemaSet): RecordSerde {
  const s = schemas ? createSerde({ schemas, schemaStore: new KafkaSchemaStore(newKafka(), { topic: schemaTopic }) }) : createKafkaSerde(newKafka(), { schemaTopic });
  open.push(s);
  return s;
}

/** A logger that records the store's topic reads. */
function readCounter(): { logger: Logger; reads: () => number } {
  const debug = vi.fn();
  return { logger: { info: () => undefined, debug } as unknown as Logger, reads: () => debug.mock.calls.filter(([, message]) => message === 'read schema store').length };
}

describe('Kafka schema store', () => {
  it('lets a fresh reader decode a record from an evolved writer, fetching the writer schema from the topic', async () => {
    const schemaTopic = schemaTopicFor('serde-store');
    const evolved = schemasWithConversationField(NEW_TAG_FIELD);

    // Process A: a newer pipeline version writing Conversation with an extra tag.
    const writer = kafkaSerde(schemaTopic, evolved);
    await writer.encode('magpie.Conversation', { ...conversation, uuid: 'first', new_tag: 'from v2' });
    const encoded = await writer.encode('magpie.Conversation', { ...conversation, new_tag: 'from v2' });

    // Process B: the current version, empty caches, only the broker in common.
    const reader = kafkaSerde(schemaTopic);
    const decoded = await reader.decode<Conversation>('magpie.Conversation', encoded.value, encoded.headers);
    expect(decoded).toEqual(conversation);

    // And back: B's records read by A get the new field's default.
    await reader.encode('magpie.Conversation', { ...conversation, uuid: 'first' });
    const old = await reader.encode('magpie.Conversation', conversation);
    const third = kafkaSerde(schemaTopic, evolved);
    expect(await third.decode('magpie.Conversation', old.value, old.headers)).toEqual({ ...conversation, new_tag: null });

    const admin = newKafka().admin();
    await admin.connect();
    try {
      const { resources } = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: schemaTopic, configNames: ['cleanup.policy'] }] });
      expect(resources[0]?.configEntries[0]?.configValue).toBe('compact');
      const offsets = await admin.fetchTopicOffsets(schemaTopic);
      // Two schema versions, each published once although each writer encoded more than one record.
      expect(offsets.reduce((n, o) => n + Number(o.high), 0)).toBe(2);
    } finally {
      await admin.disconnect();
    }
  });

  it('answers SERDE_UNKNOWN_SCHEMA for a fingerprint nobody published, and reads again only after a while', async () => {
    const topic = schemaTopicFor('serde-unknown');
    const counter = readCounter();
    const store = new KafkaSchemaStore(newKafka(), { topic, missRetryMs: 60_000, logger: counter.logger });
    const reader = serde({ schemaStore: store });
    const writer = kafkaSerde(topic);
    const encoded = await writer.encode('magpie.Conversation', conversation);
    const headers = { ...encoded.headers, [FINGERPRINT_HEADER]: 'ee'.repeat(32) };

    const err = await reader.decode('magpie.Conversation', encoded.value, headers).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SerdeError);
    expect((err as SerdeError).code).toBe('SERDE_UNKNOWN_SCHEMA');

    expect(counter.reads()).toBe(1);
    // Within missRetryMs the miss is answered from memory: the topic is not read a second time.
    await expect(reader.decode('magpie.Conversation', encoded.value, headers)).rejects.toThrow(/not in the schema store/);
    expect(counter.reads()).toBe(1);
  });

  it('serves concurrent lookups of a new fingerprint with one read of the topic', async () => {
    const topic = schemaTopicFor('serde-concurrent');
    const writerStore = new KafkaSchemaStore(newKafka(), { topic });
    await writerStore.put('aa'.repeat(32), '{"type":"string"}');
    await writerStore.close();

    const counter = readCounter();
    const store = new KafkaSchemaStore(newKafka(), { topic, logger: counter.logger });
    const results = await Promise.all(Array.from({ length: 5 }, () => store.get('aa'.repeat(32))));
    expect(results).toEqual(Array(5).fill('{"type":"string"}'));
    expect(counter.reads()).toBe(1);
    await store.close();
  });
});
