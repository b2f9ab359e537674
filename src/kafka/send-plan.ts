import { Partitioners, type Message, type TopicMessages } from 'kafkajs';
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

/** Partitions of a topic as the broker had them when read (undefined: not known, kafkajs partitions). */
export type PartitionsOf = (topic: string) => number | undefined;

/** Messages for one topic-partition, in sends that each fit the topic's limit, in order. */
export interface PartitionLane {
  topic: string;
  partition: number | undefined;
  sends: Message[][];
}

/**
 * The outputs as one lane per topic-partition (the partition chosen as kafkajs' default partitioner would, murmur2
 * of the key like the Java client), each lane split into sends that fit the topic's max.message.bytes.
 *
 * Why one partition per send: kafkajs sends a request per leader broker and retries the whole send when one of
 * them fails, re-sending to any broker whose answer it has not recorded yet, a request still in flight or one
 * whose broker connection it replaced, with sequence numbers already moved on. The broker cannot recognise those
 * records as a retry and writes them twice, inside a transaction too (seen when a broker of a cluster dies, or a
 * new topic's leaders move). A send for one partition either fails as a whole, its sequence numbers rolled back
 * and its retry recognised by the broker, or succeeds: no record is written twice.
 */
export function planLanes(byTopic: ReadonlyMap<string, OutboundMessage[]>, limitOf: (topic: string) => number, partitionsOf: PartitionsOf = () => undefined): PartitionLane[] {
  const lanes: PartitionLane[] = [];
  for (const [topic, messages] of byTopic) {
    const count = partitionsOf(topic);
    if (count === undefined) {
      lanes.push({ topic, partition: undefined, sends: planSends(new Map([[topic, messages]]), limitOf).map((send) => send[0]!.messages) });
      continue;
    }
    const partitioner = Partitioners.DefaultPartitioner();
    const partitionMetadata = Array.from({ length: count }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [], isr: [], partitionErrorCode: 0 }));
    const byPartition = new Map<number, OutboundMessage[]>();
    for (const m of messages) {
      const partition = partitioner({ topic, partitionMetadata, message: { key: m.key, value: m.value } });
      const list = byPartition.get(partition);
      if (list) list.push(m);
      else byPartition.set(partition, [m]);
    }
    for (const [partition, list] of [...byPartition].sort(([a], [b]) => a - b)) {
      const sends = planSends(new Map([[topic, list]]), limitOf).map((send) => send[0]!.messages.map((m) => ({ ...m, partition })));
      lanes.push({ topic, partition, sends });
    }
  }
  return lanes;
}

/**
 * Sends outputs lane by lane (planLanes): lanes at once, the sends of a lane one after another. Every lane is
 * waited for before a failure is reported, so none is still in flight when the caller aborts a transaction.
 */
export async function sendLanes(send: (topicMessages: TopicMessages[]) => Promise<unknown>, byTopic: ReadonlyMap<string, OutboundMessage[]>, limitOf: (topic: string) => number, partitionsOf?: PartitionsOf): Promise<void> {
  const results = await Promise.allSettled(
    planLanes(byTopic, limitOf, partitionsOf).map(async (lane) => {
      for (const messages of lane.sends) await send([{ topic: lane.topic, messages }]);
    }),
  );
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
