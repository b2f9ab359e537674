import { Partitioners, type TopicMessages } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { largestMessage, messageBytes, planLanes, planSends, sendLanes, type OutboundMessage } from '../../../src/kafka/send-plan.js';

const message = (i: number, bytes: number): OutboundMessage => ({ key: `k-${i}`, value: Buffer.alloc(bytes, i % 256), headers: { 'magpie-schema': 'magpie.Conversation' } });

describe('planSends', () => {
  it('keeps every message, in order, in sends that each fit the topic limit', () => {
    const messages = Array.from({ length: 1_000 }, (_, i) => message(i, 1_000));
    const sends = planSends(new Map([['out', messages]]), () => 200_000);
    expect(sends.length).toBeGreaterThanOrEqual(5);
    const flat = sends.flatMap((s) => s.flatMap((t) => t.messages));
    expect(flat.map((m) => m.key)).toEqual(messages.map((m) => m.key));
    for (const send of sends) {
      const bytes = send[0]!.messages.reduce((n, m) => n + messageBytes(m as OutboundMessage), 0);
      expect(bytes).toBeLessThanOrEqual(largestMessage(200_000));
    }
  });

  it('bounds each topic by its own limit and sends small outputs in one request', () => {
    const byTopic = new Map([
      ['big', Array.from({ length: 10 }, (_, i) => message(i, 40_000))],
      ['small', Array.from({ length: 10 }, (_, i) => message(i, 100))],
    ]);
    const sends = planSends(byTopic, (t) => (t === 'big' ? 100_000 : 1_000_000));
    for (const send of sends) {
      const big = send.find((t) => t.topic === 'big');
      if (big) expect(big.messages.length).toBeLessThanOrEqual(2);
    }
    expect(sends.flatMap((s) => s.filter((t) => t.topic === 'small').flatMap((t) => t.messages))).toHaveLength(10);
    expect(planSends(new Map([['small', byTopic.get('small')!]]), () => 1_000_000)).toHaveLength(1);
  });

  it('refuses a single message over the limit, naming the topic', () => {
    expect(() => planSends(new Map([['out', [message(0, 300_000)]]]), () => 200_000)).toThrow(/topic out \(max.message.bytes 200000\)/);
  });
});

describe('planLanes', () => {
  const partitionMetadata = Array.from({ length: 3 }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [], isr: [], partitionErrorCode: 0 }));
  const kafkajsPartition = (key: string) => Partitioners.DefaultPartitioner()({ topic: 'out', partitionMetadata, message: { key, value: null } });

  it('gives each send one topic-partition, the one kafkajs would pick for the key, in order and within the size limit', () => {
    const messages = Array.from({ length: 600 }, (_, i) => message(i, 1_000));
    const lanes = planLanes(new Map([['out', messages], ['rejects', [message(9_999, 10)]]]), () => 200_000, () => 3);
    expect(lanes.filter((l) => l.topic === 'out').map((l) => l.partition)).toEqual([0, 1, 2]);
    expect(lanes.filter((l) => l.topic === 'rejects').map((l) => l.partition)).toEqual([kafkajsPartition('k-9999')]);
    for (const lane of lanes) {
      for (const send of lane.sends) {
        expect(send.every((m) => m.partition === lane.partition)).toBe(true);
        expect(send.reduce((n, m) => n + messageBytes(m as OutboundMessage), 0)).toBeLessThanOrEqual(largestMessage(200_000));
        if (lane.topic === 'out') for (const m of send) expect(m.partition).toBe(kafkajsPartition(String(m.key)));
      }
    }
    const out = lanes.filter((l) => l.topic === 'out');
    expect(out.flatMap((l) => l.sends.flat()).length).toBe(600);
    // Order within a partition is the order given.
    for (const lane of out) {
      const keys = lane.sends.flat().map((m) => Number(String(m.key).slice(2)));
      expect(keys).toEqual([...keys].sort((a, b) => a - b));
    }
  });

  it('leaves partitioning to kafkajs for a topic whose partitions are not known, its sends one after another in order', () => {
    const messages = Array.from({ length: 600 }, (_, i) => message(i, 1_000));
    const lanes = planLanes(new Map([['out', messages]]), () => 200_000);
    expect(lanes).toHaveLength(1);
    expect(lanes[0]!.partition).toBeUndefined();
    expect(lanes[0]!.sends.length).toBeGreaterThan(1);
    expect(lanes[0]!.sends.flat().every((m) => m.partition === undefined)).toBe(true);
    expect(lanes[0]!.sends.flat().map((m) => m.key)).toEqual(messages.map((m) => m.key));
  });

  it('reports a failed lane only after every lane has settled', async () => {
    const settled: string[] = [];
    const send = async ([t]: TopicMessages[]) => {
      const partition = t!.messages[0]!.partition;
      if (partition === 0) throw new Error('lane 0 failed');
      await new Promise((r) => setTimeout(r, 20));
      settled.push(`p${partition}`);
    };
    const messages = Array.from({ length: 60 }, (_, i) => message(i, 10));
    await expect(sendLanes(send, new Map([['out', messages]]), () => 200_000, () => 3)).rejects.toThrow('lane 0 failed');
    expect(settled.sort()).toEqual(['p1', 'p2']);
  });
});
