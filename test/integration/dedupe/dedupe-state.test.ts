/**
 * The near-duplicate stage's state under process faults, with real `magpie run` processes, a real broker and
 * real MiniLM embeddings: a stage that is killed, restarted or doubled during a deploy must make the same
 * decisions as an undisturbed run of the same stage type on the same embeddings (stage `dedupe-ref`), and a
 * restore from a snapshot and the changelog after it (or past a corrupt snapshot) the same as a full replay.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Kafka } from 'kafkajs';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createEmbedder } from '../../../src/embedding/transformers.js';
import { portRestorer } from '../../../src/kafka/restore.js';
import { nearDuplicate, NearDuplicateFilter } from '../../../src/processors/near-duplicate.js';
import type { InputRecord } from '../../../src/processors/stage.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { createKafka, createProducer } from '../../../src/kafka/client.js';
import { createTopologyTopics, runTopology } from '../../../src/topology/build.js';
import { waitUntilDrained } from '../../../src/topology/drain.js';
import { loadTopologyFile, type Topology } from '../../../src/topology/load.js';
import { uniquePrefix } from '../../support/broker.js';
import { changelogSeqs, conversations, decisionOf, DEDUPE_N, DEDUPE_TOPOLOGY, dedupeReference, restoreFailures, TOPICS } from '../../support/dedupe.js';
import { SinkTail } from '../../support/faults/sink.js';
import { StageProcess } from '../../support/faults/stage-process.js';
import { makeConversation, readAll } from '../../support/records.js';
import { topologyTestContext } from '../../support/topology-run.js';

const { logger, bootstrap, track } = topologyTestContext();
const serde = createSerde();
const FILE = DEDUPE_TOPOLOGY;
const N = DEDUPE_N;
const cleanups: (() => Promise<unknown> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Topics, the input embedded once, and the reference decisions of an undisturbed stage. */
async function prepare(name: string) {
  const prefix = uniquePrefix(name);
  const stateDir = mkdtempSync(path.join(tmpdir(), 'magpie-dedupe-state-'));
  cleanups.push(() => rmSync(stateDir, { recursive: true, force: true }));
  const env = { ...process.env, DEDUPE_STATE_DIR: stateDir };
  const topology = await loadTopologyFile(FILE, { topicPrefix: prefix, brokers: [bootstrap], env });
  const kafka = createKafka(topology.kafka, logger);
  await createTopologyTopics(kafka, topology);
  // The embedded records, to feed the stage under test in steps: it is faster than a kill otherwise.
  const { expected, embedded } = await dedupeReference(topology, kafka, serde, logger);
  let fed = 0;
  const producer = createProducer(kafka, { idempotent: true });
  await producer.connect();
  cleanups.push(() => producer.disconnect());
  const feed = async (upTo: number) => {
    await producer.send({ topic: `${prefix}embedded-feed`, acks: -1, messages: embedded.slice(fed, upTo) });
    fed = upTo;
  };
  const tail = await new SinkTail(kafka, `${prefix}deduped`).start();
  cleanups.push(() => tail.stop());
  const spawn = (label: string) => {
    const p = new StageProcess({ topology: FILE, brokers: bootstrap, prefix, stages: ['dedupe'], env: { DEDUPE_STATE_DIR: stateDir }, label: `${prefix}${label}` });
    cleanups.push(() => p.stop());
    return p;
  };
  /** Waits until the stage has committed its whole input, then checks its outputs and changelog. */
  const check = async (processes: StageProcess[]) => {
    const deadline = Date.now() + 180_000;
    while (tail.count < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
    const out = await readAll<Conversation>(kafka, serde, `${prefix}deduped`, 'magpie.Conversation');
    const problems = processes.map((p) => p.problems()).join('\n');
    expect(out.length, `outputs (exactly once)\n${problems}`).toBe(N);
    expect(out.map(decisionOf), problems).toEqual(expected);
    // The changelog restores: one entry per record, seqs 0..N-1 in offset order, no gap and no repeat.
    expect(await changelogSeqs(kafka, serde, `${prefix}dedupe-index`)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(restoreFailures(processes)).toEqual([]);
  };
  return { spawn, tail, check, feed, topology, kafka, stateDir };
}

/** Instructions the input does not hold: rewordings of its topics, unrelated ones, and exact repeats of it. */
const PROBES = [
  ...TOPICS.slice(0, 10).map((t) => `Can you tell me about ${t}?`),
  'How do volcanoes form?', 'Write a haiku about autumn leaves.', 'What is the capital of Australia?', 'Plan a three-day trip to Kyoto.',
  ...conversations().slice(0, 6).map((c) => c.instruction),
];

/** Probe records with real MiniLM embeddings, as the embed stage writes them. */
async function probeRecords(topology: Topology): Promise<InputRecord<Conversation>[]> {
  const embedder = await createEmbedder(topology.embedders.minilm!);
  try {
    const vectors = await embedder.embed(PROBES);
    return PROBES.map((text, i) => ({
      value: { ...makeConversation(10_000 + i, text), embedding: Array.from(vectors[i]!), embedding_model: 'all-MiniLM-L6-v2' },
      key: null,
      headers: {},
      topic: 'probe',
      partition: 0,
      offset: String(i),
      timestamp: '0',
    }));
  } finally {
    await embedder.close();
  }
}

/** A near-duplicate stage restored from the real changelog topic; its log lines are kept. */
async function restoredStage(topology: Topology, kafka: Kafka, snapshots: Record<string, unknown>) {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
  const target = topology.stages.find((s) => s.name === 'dedupe')!;
  const stage = new NearDuplicateFilter(nearDuplicate.config.parse({ snapshots }));
  cleanups.push(() => stage.close());
  const ctx = { logger: log, signal: new AbortController().signal, heartbeat: async () => undefined };
  await stage.init(ctx, portRestorer(kafka, serde, target, log));
  return { lines, decide: async (probe: InputRecord<Conversation>[]) => (await stage.process(probe, ctx)).map((o) => (o.kind === 'emit' ? decisionOf(o.records[0]!.value as Conversation) : o)) };
}

describe('near-duplicate state under process faults (real broker, real MiniLM embeddings)', () => {
  it('kill -9 mid-stream, then a restart: every decision equals the undisturbed run', async () => {
    const t = await prepare('dedupe-kill9');
    const first = t.spawn('first');
    await t.feed(N / 2);
    await first.waitForLog((l) => l.msg === 'index snapshot saved', 180_000);
    // More records while it works, and the kill right after them: it dies with chunks in flight.
    await t.feed(N);
    await first.kill();
    expect(t.tail.count).toBeLessThan(N);
    const second = t.spawn('second');
    // The restart loads the snapshot saved before the kill and replays only the changelog after it.
    await second.waitForLog((l) => l.msg.startsWith('near-duplicate index restored from a snapshot'), 120_000);
    await t.check([first, second]);
    expect(second.running).toBe(true);
  });

  it('a second instance started during a deploy, then the first killed: no failed restore, no loss, no duplicate, same decisions', async () => {
    const t = await prepare('dedupe-deploy');
    const first = t.spawn('first');
    await t.feed(N / 4);
    await t.tail.waitFor(N / 4, 180_000);
    const second = t.spawn('second');
    await second.started();
    // Both in the group now; the first keeps or hands over the partition, and then dies without a goodbye.
    await t.feed(N / 2);
    await t.tail.waitFor(N / 2, 180_000);
    await t.feed(N);
    await first.kill();
    await t.check([first, second]);
    expect(second.running).toBe(true);
    expect(second.lines.some((l) => l.msg === 'near-duplicate index caught up with the changelog')).toBe(true);
  });

  it('restores from a snapshot and the changelog after it, and past corrupt snapshots from the whole changelog, with the decisions of a full replay', async () => {
    const t = await prepare('dedupe-restore');
    await t.feed(N);
    const run = track(await runTopology(t.topology, logger, { stages: ['dedupe'] }));
    await waitUntilDrained(run);
    await run.stop();
    await t.check([]);
    const probe = await probeRecords(t.topology);

    const fromSnapshot = await restoredStage(t.topology, t.kafka, { dir: t.stateDir, every: 100 });
    const restored = fromSnapshot.lines.find((l) => l.msg.startsWith('near-duplicate index restored from a snapshot'));
    expect(restored).toMatchObject({ size: N });
    expect(restored!.fromSnapshot).toBeGreaterThanOrEqual(100);
    expect(Number(restored!.fromSnapshot) + Number(restored!.fromChangelog)).toBe(N);
    const full = await restoredStage(t.topology, t.kafka, { every: 0 });
    expect(full.lines.find((l) => l.msg === 'near-duplicate index restored from the changelog')).toMatchObject({ size: N });
    const expected = await full.decide(probe);
    expect(await fromSnapshot.decide(probe)).toEqual(expected);
    // Probes that are new and probes that repeat the input: the decisions are not all alike.
    expect(expected.filter((d) => 'is_duplicate' in d && d.is_duplicate).length).toBeGreaterThanOrEqual(6);
    expect(expected.filter((d) => 'is_duplicate' in d && !d.is_duplicate).length).toBeGreaterThanOrEqual(4);

    const dir = path.join(t.stateDir, `${t.topology.stages.find((s) => s.name === 'dedupe')!.ports.changelog}`);
    const indexFiles = readdirSync(dir).filter((f) => f.endsWith('.usearch'));
    expect(indexFiles.length).toBeGreaterThan(0);
    for (const f of indexFiles) {
      const bytes = readFileSync(path.join(dir, f));
      bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
      writeFileSync(path.join(dir, f), bytes);
    }
    const pastCorrupt = await restoredStage(t.topology, t.kafka, { dir: t.stateDir, every: 100 });
    const skipped = pastCorrupt.lines.filter((l) => l.msg === 'index snapshot skipped');
    expect(skipped).toHaveLength(indexFiles.length);
    for (const l of skipped) expect(l).toMatchObject({ level: 40, reason: expect.stringMatching(/does not match its checksum/) });
    expect(pastCorrupt.lines.find((l) => l.msg === 'near-duplicate index restored from the changelog')).toMatchObject({ size: N });
    expect(await pastCorrupt.decide(probe)).toEqual(expected);
  });
});
