import { ConfigResourceTypes, Kafka, logLevel } from 'kafkajs';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import type { Logger } from '../../../src/core/logger.js';
import { SerdeError } from '../../../src/core/errors.js';
import { KafkaSchemaStore } from '../../../src/serde/kafka-schema-store.js';
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

describe('Kafka schema store', () => {
  it('lets a fresh reader decode a record from an evolved writer, fetching the writer schema from the topic', async () => {
    const schemaTopic = schemaTopicFor('serde-store');
    const evolved = schemasWithConversationField(NEW_TAG_FIELD);

    // Process A: a newer pipeline version writing Conversation with an extra tag.
    const writer = serde({ schemas: evolved, kafka: newKafka(), config: { schemaTopic } });
    await writer.encode('magpie.Conversation', { ...conversation, uuid: 'first', new_tag: 'from v2' });
    const encoded = await writer.encode('magpie.Conversation', { ...conversation, new_tag: 'from v2' });

    // Process B: the current version, empty caches, only the broker in common.
    const reader = serde({ kafka: newKafka(), config: { schemaTopic } });
    const decoded = await reader.decode<Conversation>('magpie.Conversation', encoded.value, encoded.headers);
    expect(decoded).toEqual(conversation);

    // And back: B's records read by A get the new field's default.
    await reader.encode('magpie.Conversation', { ...conversation, uuid: 'first' });
    const old = await reader.encode('magpie.Conversation', conversation);
    const third = serde({ schemas: evolved, kafka: newKafka(), config: { schemaTopic } });
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
    const store = new KafkaSchemaStore(newKafka(), { topic, missRetryMs: 60_000 });
    const reader = serde({ schemaStore: store });
    const writer = serde({ kafka: newKafka(), config: { schemaTopic: topic } });
    const encoded = await writer.encode('magpie.Conversation', conversation);
    const headers = { ...encoded.headers, [FINGERPRINT_HEADER]: 'ee'.repeat(32) };

    const err = await reader.decode('magpie.Conversation', encoded.value, headers).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SerdeError);
    expect((err as SerdeError).code).toBe('SERDE_UNKNOWN_SCHEMA');

    const t0 = Date.now();
    await expect(reader.decode('magpie.Conversation', encoded.value, headers)).rejects.toThrow(/not in the schema store/);
    expect(Date.now() - t0).toBeLessThan(200);
  });

  it('serves concurrent lookups of a new fingerprint with one read of the topic', async () => {
    const topic = schemaTopicFor('serde-concurrent');
    const writerStore = new KafkaSchemaStore(newKafka(), { topic });
    await writerStore.put('aa'.repeat(32), '{"type":"string"}');
    await writerStore.close();

    const debug = vi.fn();
    const logger = { info: () => undefined, debug } as unknown as Logger;
    const store = new KafkaSchemaStore(newKafka(), { topic, logger });
    const results = await Promise.all(Array.from({ length: 5 }, () => store.get('aa'.repeat(32))));
    expect(results).toEqual(Array(5).fill('{"type":"string"}'));
    expect(debug.mock.calls.filter(([, message]) => message === 'read schema store')).toHaveLength(1);
    await store.close();
  });
});
