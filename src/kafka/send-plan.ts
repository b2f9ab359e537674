import type { TopicMessages } from 'kafkajs';
import { MagpieError } from '../core/errors.js';

/** Kafka's default max.message.bytes (broker message.max.bytes) of a topic. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

/**
 * Room kept free in every request for the record-batch header and per-record framing kafkajs adds (varints,
 * attributes, timestamps): generous, since an estimate that runs over makes the broker refuse the whole send.
 */
const BATCH_OVERHEAD = 1_024;
const RECORD_OVERHEAD = 64;

export interface OutboundMessage {
  key: string | Buffer | null;
  value: Buffer;
  headers: Record<string, string>;
}

/** Bytes one message takes in a record batch, over-estimated. */
export function messageBytes(m: OutboundMessage): number {
  let bytes = RECORD_OVERHEAD + m.value.length + (m.key === null ? 0 : Buffer.byteLength(m.key));
  for (const [k, v] of Object.entries(m.headers)) bytes += Buffer.byteLength(k) + Buffer.byteLength(v) + 8;
  return bytes;
}

/** Largest single message a topic with this max.message.bytes takes. */
export function largestMessage(maxMessageBytes: number): number {
  return maxMessageBytes - BATCH_OVERHEAD;
}

/**
 * Splits outputs into sends that each fit every topic's max.message.bytes: kafkajs puts all of a partition's
 * messages of one send into one record batch and never splits it, and the broker refuses a batch over the
 * limit for good (MESSAGE_TOO_LARGE). Order within a topic is kept. A message that alone is over its topic's
 * limit is an error: the caller must have dead-lettered it before.
 */
export function planSends(byTopic: ReadonlyMap<string, OutboundMessage[]>, limitOf: (topic: string) => number): TopicMessages[][] {
  const sends: TopicMessages[][] = [];
  let current = new Map<string, OutboundMessage[]>();
  const used = new Map<string, number>();
  const flush = () => {
    if (current.size > 0) sends.push([...current].map(([topic, messages]) => ({ topic, messages })));
    current = new Map();
    used.clear();
  };
  for (const [topic, messages] of byTopic) {
    const room = largestMessage(limitOf(topic));
    for (const m of messages) {
      const size = messageBytes(m);
      if (size > room) throw new MagpieError('OUTPUT_TOO_LARGE', `a message of about ${size} bytes does not fit topic ${topic} (max.message.bytes ${limitOf(topic)})`);
      // Partitions are chosen by kafkajs; bounding the whole topic's share of a send bounds each partition's batch.
      if ((used.get(topic) ?? 0) + size > room) flush();
      used.set(topic, (used.get(topic) ?? 0) + size);
      const list = current.get(topic);
      if (list) list.push(m);
      else current.set(topic, [m]);
    }
  }
  flush();
  return sends;
}
