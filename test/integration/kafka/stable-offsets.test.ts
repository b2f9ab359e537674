/**
 * Committed offsets read while a transaction that moves them is still open: the read waits for the transaction
 * (OffsetFetch v7, require_stable) and returns what it committed, never the offset from before it.
 */
import { pino } from 'pino';
import { describe, expect, inject, it } from 'vitest';
import { createKafka, createProducer } from '../../../src/kafka/client.js';
import { groupOffsets } from '../../../src/kafka/consumer-lag.js';
import { kafkaConfigSchema } from '../../../src/topology/schema.js';
import { uniquePrefix } from '../../support/broker.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'fatal' });
const bootstrap = inject('kafkaBootstrap');

describe('committed offsets on a real broker', () => {
  it('a read while a transaction holds new offsets returns the offsets it commits, not the ones before it', async () => {
    const prefix = uniquePrefix('stable');
    const topic = `${prefix}in`;
    const groupId = `${prefix}group`;
    const kafka = createKafka(kafkaConfigSchema.parse({ brokers: bootstrap.split(',') }), logger);
    const admin = kafka.admin();
    await admin.connect();
    const producer = createProducer(kafka, { transactionalId: `${prefix}txn` });
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
      await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '0' }] });
      expect(await groupOffsets(admin, groupId, topic)).toEqual(new Map([[0, 0n]]));

      await producer.connect();
      const txn = await producer.transaction();
      await txn.sendOffsets({ consumerGroupId: groupId, topics: [{ topic, partitions: [{ partition: 0, offset: '42' }] }] });
      // The transaction is open: its offset 42 is pending. A read now must not answer 0.
      const read = groupOffsets(admin, groupId, topic);
      const answeredEarly = await Promise.race([read.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 1_500))]);
      expect(answeredEarly).toBe(false);
      await txn.commit();
      expect(await read).toEqual(new Map([[0, 42n]]));

      // With nothing pending, reads answer at once, and a group that never committed reads as none.
      expect(await groupOffsets(admin, groupId, topic)).toEqual(new Map([[0, 42n]]));
      expect(await groupOffsets(admin, `${prefix}other`, topic)).toEqual(new Map());
    } finally {
      await producer.disconnect().catch(() => undefined);
      await admin.disconnect();
    }
  });
});
