import { randomBytes } from 'node:crypto';
import type { Kafka, Message } from 'kafkajs';
import { ensureTopics } from '../../src/kafka/admin.js';
import { createKafka } from '../../src/kafka/client.js';
import type { BatchCommittedEvent, StageRunner } from '../../src/kafka/stage-runner.js';
import { createSerde } from '../../src/serde/serde.js';
import { createTopologyTopics, runTopology } from '../../src/topology/build.js';
import { loadTopologyFile, type Topology } from '../../src/topology/load.js';
import { makeInstruction } from '../../test/support/records.js';
import { measurement, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const TOPOLOGY = 'topologies/test/pass-through.yaml';
const PARTITIONS = 3;

/** Records/s between the first and the last commit: group join and start-up are left out of both sides alike. */
class CommitClock {
  private first: { at: number; records: number } | undefined;
  private last = 0;
  private total = 0;
  private done!: () => void;
  readonly finished = new Promise<void>((resolve) => (this.done = resolve));

  constructor(private readonly expected: number) {}

  add(records: number): void {
    const now = performance.now();
    this.first ??= { at: now, records };
    this.total += records;
    this.last = now;
    if (this.total >= this.expected) this.done();
  }

  rate(): number {
    if (!this.first || this.last === this.first.at) return Number.NaN;
    return ((this.total - this.first.records) * 1000) / (this.last - this.first.at);
  }
}

async function produce(kafka: Kafka, topic: string, messages: Message[]): Promise<number> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
  await producer.connect();
  const started = performance.now();
  try {
    for (let i = 0; i < messages.length; i += 2_000) await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 2_000) });
  } finally {
    await producer.disconnect();
  }
  return (messages.length * 1000) / (performance.now() - started);
}

/** The baseline: kafkajs alone copying bytes (no decode, no encode), produce then commit per batch, at-least-once. */
async function rawCopy(kafka: Kafka, input: string, output: string, expected: number, batchSize: number): Promise<number> {
  const clock = new CommitClock(expected);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
  const consumer = kafka.consumer({ groupId: `${input}.raw`, maxBytesPerPartition: 1_048_576 });
  await Promise.all([producer.connect(), consumer.connect()]);
  try {
    await consumer.subscribe({ topics: [input], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: PARTITIONS,
      eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
        for (let start = 0; start < batch.messages.length; start += batchSize) {
          const chunk = batch.messages.slice(start, start + batchSize);
          await producer.sendBatch({ acks: -1, topicMessages: [{ topic: output, messages: chunk.map((m) => ({ key: m.key, value: m.value, headers: m.headers })) }] });
          const last = chunk[chunk.length - 1]!.offset;
          await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() }]);
          resolveOffset(last);
          clock.add(chunk.length);
          await heartbeat();
        }
      },
    });
    await clock.finished;
    return clock.rate();
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
  }
}

async function runnerCopy(topology: Topology, ctx: BenchContext, expected: number): Promise<number> {
  const clock = new CommitClock(expected);
  const running = await runTopology(topology, ctx.logger, { createTopics: false });
  try {
    const runner = running.runners.get('copy') as StageRunner;
    runner.on('committed', (e: BatchCommittedEvent) => clock.add(e.counts.in));
    await clock.finished;
    return clock.rate();
  } finally {
    await running.stop(0);
  }
}

export const kafkaSuite: Suite = {
  name: 'kafka',
  description: 'pass-through records/s through the stage runner (exactly-once and at-least-once) vs raw kafkajs consume→produce→commit',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const brokers = await ctx.brokers();
    const count = ctx.quick ? 20_000 : 100_000;
    const prefix = `bench-kafka-${randomBytes(3).toString('hex')}-`;
    const base = await loadTopologyFile(TOPOLOGY, { topicPrefix: prefix, brokers });
    const stage = base.stages[0]!;
    const kafka = createKafka(base.kafka, ctx.logger);
    const serde = createSerde({ kafka, config: base.serde, logger: ctx.logger });
    const messages: Message[] = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const v = makeInstruction(i);
        const e = await serde.encode('magpie.Instruction', v, stage.input);
        return { key: v.uuid, value: e.value, headers: e.headers };
      }),
    );
    const bytes = Math.round(messages.reduce((a, m) => a + (m.value as Buffer).length, 0) / count);

    const variants: { label: string; exactlyOnce: boolean }[] = [
      { label: 'exactly-once', exactlyOnce: true },
      { label: 'at-least-once', exactlyOnce: false },
    ];
    const rates: Record<string, number> = {};
    let produceRate = 0;
    for (const v of variants) {
      const vp = `${prefix}${v.label}-`;
      const topology: Topology = { ...(await loadTopologyFile(TOPOLOGY, { topicPrefix: vp, brokers })) };
      const t = { ...topology, stages: topology.stages.map((s) => ({ ...s, exactlyOnce: v.exactlyOnce })) };
      await createTopologyTopics(kafka, t, ctx.logger);
      produceRate = await produce(kafka, t.stages[0]!.input!, messages);
      rates[v.label] = await runnerCopy(t, ctx, count);
      ctx.progress(`kafka runner ${v.label}: ${rates[v.label]!.toFixed(0)} records/s (produce ${produceRate.toFixed(0)}/s)`);
    }
    const rawIn = `${prefix}raw-in`;
    const rawOut = `${prefix}raw-out`;
    await ensureTopics(kafka, [rawIn, rawOut].map((name) => ({ name, partitions: PARTITIONS, replicationFactor: 1 })), ctx.logger);
    await produce(kafka, rawIn, messages);
    const raw = await rawCopy(kafka, rawIn, rawOut, count, stage.batchSize ?? 32);
    ctx.progress(`kafka raw kafkajs copy: ${raw.toFixed(0)} records/s`);
    await serde.close();

    const details = { records: count, avroBytes: bytes, partitions: PARTITIONS, batchSize: stage.batchSize, concurrency: stage.concurrency, produceRecordsPerSecond: Math.round(produceRate) };
    const baseline = { name: 'raw kafkajs copy (at-least-once)', value: raw };
    return variants.map((v) => measurement('kafka', `stage runner pass-through, ${v.label}`, rates[v.label]!, 'records/s', baseline, details));
  },
};
