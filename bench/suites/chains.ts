import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Kafka, Message } from 'kafkajs';
import { createKafka, createProducer } from '../../src/kafka/client.js';
import { readTopic } from '../../src/kafka/read-topic.js';
import { createKafkaSerde } from '../../src/kafka/schema-store.js';
import type { BatchCommittedEvent, StageRunner } from '../../src/kafka/stage-runner.js';
import { createTopologyTopics, runTopology } from '../../src/topology/build.js';
import { loadTopologyFile, topologyTopics } from '../../src/topology/load.js';
import { kafkaRunDir } from '../../test/support/broker.js';
import { measurement, median, sleepMs, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';
import { taggedConversation } from '../lib/records.js';

const TOPOLOGY = fileURLToPath(new URL('../topologies/chains.yaml', import.meta.url));
/** Name of the broker bench/run.ts starts: its log directories are read for the bytes on disk. */
const BENCH_CLUSTER = 'bench';
/** The bench writes the input in ticks of this many ms: an even load, not one burst queued behind itself. */
const TICK_MS = 50;
/** Records sent and drained before the measured ones: group joins and first fetches stay out of the figures. */
const WARMUP_RECORDS = 150;

type Via = 'topic' | 'memory';

interface ChainRun {
  sinkRecords: number;
  /** key + value + header bytes of every record the stages wrote, all topics (rejects and dead letters included). */
  recordBytes: number;
  recordsWritten: number;
  /** Bytes the broker appended to the topology's segment files (batch headers and transaction markers included). */
  logBytes: number | undefined;
  /** Appended to __consumer_offsets and __transaction_state meanwhile: the cost of each hop's offset commits and transactions. */
  internalLogBytes: number | undefined;
  /** Sink record timestamp − source record timestamp, ms, of the measured records. */
  latenciesMs: number[];
}

/** Sizes of the segment files of the partition directories `matches` picks, on every node; undefined for a broker not started here. */
async function logBytes(matches: (dir: string) => boolean): Promise<number | undefined> {
  // A broker given by KAFKA_BROKERS keeps its files elsewhere (a 'bench' run directory may be an old one).
  if (process.env.KAFKA_BROKERS?.trim()) return undefined;
  const root = kafkaRunDir(BENCH_CLUSTER);
  const nodes = (await readdir(root).catch(() => [] as string[])).filter((n) => /^node-\d+$/.test(n));
  if (nodes.length === 0) return undefined;
  let total = 0;
  for (const node of nodes) {
    const data = path.join(root, node, 'data');
    for (const dir of await readdir(data).catch(() => [] as string[])) {
      if (!matches(dir)) continue;
      for (const f of await readdir(path.join(data, dir))) if (f.endsWith('.log')) total += (await stat(path.join(data, dir, f))).size;
    }
  }
  return total;
}

const partitionDirOf = (topics: ReadonlySet<string>) => (dir: string) => topics.has(dir.replace(/-\d+$/, ''));
const INTERNAL = new Set(['__consumer_offsets', '__transaction_state']);

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function send(kafka: Kafka, topic: string, batches: Message[][], onSent: (messages: Message[], at: number) => void): Promise<void> {
  const producer = createProducer(kafka, { idempotent: true });
  await producer.connect();
  try {
    const start = performance.now();
    for (let k = 0; k < batches.length; k++) {
      const due = start + k * TICK_MS;
      const wait = due - performance.now();
      if (wait > 0) await sleepMs(wait);
      const at = Date.now();
      const messages = batches[k]!.map((m) => ({ ...m, timestamp: String(at) }));
      await producer.send({ topic, acks: -1, messages });
      onSent(messages, at);
    }
  } finally {
    await producer.disconnect();
  }
}

async function runChain(ctx: BenchContext, via: Via, measured: number, perSecond: number): Promise<ChainRun> {
  const brokers = await ctx.brokers();
  const prefix = `bench-chains-${via}-${randomBytes(3).toString('hex')}-`;
  const topology = await loadTopologyFile(TOPOLOGY, { topicPrefix: prefix, brokers, env: { ...process.env, VIA: via } });
  const kafka = createKafka(topology.kafka, ctx.logger);
  await createTopologyTopics(kafka, topology, ctx.logger);
  const input = topology.stages[0]!.input!;
  const sink = topology.stages.at(-1)!;
  const serde = createKafkaSerde(kafka, topology.serde, ctx.logger);
  const encode = async (i: number): Promise<Message> => {
    const v = taggedConversation(i);
    const e = await serde.encode('magpie.Conversation', v, input);
    return { key: v.uuid, value: e.value, headers: e.headers };
  };
  const total = WARMUP_RECORDS + measured;
  const messages = await Promise.all(Array.from({ length: total }, (_, i) => encode(i))).finally(() => serde.close());
  // The unique stage rejects the duplicates; the rest reach the sink.
  const kept = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => taggedConversation(from + k)).filter((c) => !c.is_duplicate).length;
  const perTick = Math.max(1, Math.round((perSecond * TICK_MS) / 1000));
  const batches: Message[][] = [];
  for (let i = WARMUP_RECORDS; i < total; i += perTick) batches.push(messages.slice(i, Math.min(total, i + perTick)));

  const internalBefore = await logBytes(partitionDirOf(INTERNAL));
  const running = await runTopology(topology, ctx.logger, { createTopics: false });
  const sentAt = new Map<string, number>();
  try {
    let sinkOut = 0;
    let reached: { count: number; resolve: () => void } | undefined;
    (running.runners.get(sink.name) as StageRunner).on('committed', (e: BatchCommittedEvent) => {
      sinkOut += e.counts.out;
      if (reached && sinkOut >= reached.count) reached.resolve();
    });
    const sinkReaches = (count: number, timeoutMs: number) =>
      new Promise<void>((resolve, reject) => {
        if (sinkOut >= count) return resolve();
        const timer = setTimeout(() => reject(new Error(`sink has ${sinkOut} of ${count} records after ${timeoutMs} ms`)), timeoutMs);
        reached = { count, resolve: () => (clearTimeout(timer), resolve()) };
      });
    await send(kafka, input, [messages.slice(0, WARMUP_RECORDS)], () => undefined);
    await sinkReaches(kept(0, WARMUP_RECORDS), 120_000);
    await send(kafka, input, batches, (sent, at) => {
      for (const m of sent) sentAt.set(String(m.key), at);
    });
    await sinkReaches(kept(0, total), 120_000);
  } finally {
    await running.stop();
  }
  const internalAfter = await logBytes(partitionDirOf(INTERNAL));

  // Everything the stages wrote: every topic of the topology but the input the bench wrote.
  const written = new Set([...topologyTopics(topology).keys()].filter((t) => t !== input));
  let recordBytes = 0;
  let recordsWritten = 0;
  const latenciesMs: number[] = [];
  let sinkRecords = 0;
  const admin = kafka.admin();
  await admin.connect();
  try {
    for (const topic of written) {
      const ends = await admin.fetchTopicOffsets(topic);
      if (ends.every((e) => e.high === e.low)) continue;
      await readTopic(kafka, topic, (raw) => {
        recordsWritten++;
        recordBytes += (raw.key?.length ?? 0) + (raw.value?.length ?? 0);
        for (const [k, v] of Object.entries(raw.headers)) recordBytes += Buffer.byteLength(k) + Buffer.byteLength(v);
        if (topic !== sink.ports['out']) return;
        sinkRecords++;
        const sent = sentAt.get(raw.key?.toString() ?? '');
        if (sent !== undefined) latenciesMs.push(Number(raw.timestamp) - sent);
      });
    }
  } finally {
    await admin.disconnect();
  }
  return {
    sinkRecords,
    recordBytes,
    recordsWritten,
    logBytes: await logBytes(partitionDirOf(written)),
    internalLogBytes: internalBefore !== undefined && internalAfter !== undefined ? internalAfter - internalBefore : undefined,
    latenciesMs: latenciesMs.sort((a, b) => a - b),
  };
}

const round = (x: number, digits = 1) => Number(x.toFixed(digits));

export const chainsSuite: Suite = {
  name: 'chains',
  description: 'four cheap stages, each a topic hop vs chained in memory (via: memory): bytes written to Kafka and latency per sink record',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const measured = ctx.quick ? 2_400 : 9_000;
    const perSecond = ctx.quick ? 200 : 300;
    // Alternating rounds, medians reported: the machine's background load hits both variants alike.
    const rounds = ctx.quick ? 2 : 3;
    const runs: Record<Via, ChainRun[]> = { topic: [], memory: [] };
    for (let r = 0; r < rounds; r++) {
      for (const via of ['topic', 'memory'] as const) {
        const run = await runChain(ctx, via, measured, perSecond);
        runs[via].push(run);
        ctx.progress(
          `chains via ${via}: ${run.sinkRecords} sink records, ${(run.recordBytes / run.sinkRecords).toFixed(0)} record bytes and ` +
            `${run.logBytes === undefined ? '?' : (run.logBytes / run.sinkRecords).toFixed(0)} log bytes per sink record; ` +
            `latency p50 ${quantile(run.latenciesMs, 0.5)} ms, p95 ${quantile(run.latenciesMs, 0.95)} ms`,
        );
      }
    }
    const figure = (via: Via, of: (run: ChainRun) => number | undefined): number | undefined => {
      const values = runs[via].map(of);
      return values.every((v): v is number => v !== undefined) ? median(values) : undefined;
    };
    const perSink = (of: (run: ChainRun) => number | undefined) => (run: ChainRun) => {
      const v = of(run);
      return v === undefined ? undefined : v / run.sinkRecords;
    };
    const details = (via: Via) => ({
      records: measured,
      recordsPerSecond: perSecond,
      rounds,
      recordsWrittenPerSinkRecord: round(figure(via, perSink((r) => r.recordsWritten))!, 2),
      latencyMaxMs: figure(via, (r) => r.latenciesMs.at(-1)),
    });
    const out: Measurement[] = [];
    const add = (name: string, unit: string, of: (run: ChainRun) => number | undefined, baselineName: string) => {
      const chained = figure('memory', of);
      const hops = figure('topic', of);
      if (chained === undefined || hops === undefined) return;
      out.push(measurement('chains', name, round(chained), unit, { name: baselineName, value: round(hops) }, { chained: details('memory'), topicHops: details('topic') }, 'lower'));
    };
    add('record bytes written per sink record, chained', 'B/record', perSink((r) => r.recordBytes), 'every stage a topic hop');
    add('log bytes appended per sink record, chained', 'B/record', perSink((r) => r.logBytes), 'every stage a topic hop');
    add('offset and transaction log bytes per sink record, chained', 'B/record', perSink((r) => r.internalLogBytes), 'every stage a topic hop');
    add('latency p50 source → sink, chained', 'ms', (r) => quantile(r.latenciesMs, 0.5), 'every stage a topic hop');
    add('latency p95 source → sink, chained', 'ms', (r) => quantile(r.latenciesMs, 0.95), 'every stage a topic hop');
    return out;
  },
};
