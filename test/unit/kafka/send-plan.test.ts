import { describe, expect, it } from 'vitest';
import { largestMessage, messageBytes, planSends, type OutboundMessage } from '../../../src/kafka/send-plan.js';

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
