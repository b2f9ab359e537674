/**
 * Fixtures of the near-duplicate stage's fault tests (the dedupe state test and the fault-injection suite):
 * the topology, the input conversations, their real MiniLM embeddings computed once, and the decisions of an
 * undisturbed stage on them, which a killed, restarted or doubled stage must reproduce.
 */
import type { Kafka } from 'kafkajs';
import { expect } from 'vitest';
import type { Logger } from '../../src/core/logger.js';
import { readTopic } from '../../src/kafka/read-topic.js';
import type { Conversation, IndexEntry } from '../../src/serde/records.generated.js';
import type { RecordSerde } from '../../src/serde/serde.js';
import { runTopology } from '../../src/topology/build.js';
import { waitUntilDrained } from '../../src/topology/drain.js';
import type { Topology } from '../../src/topology/load.js';
import type { StageProcess } from './faults/stage-process.js';
import { makeConversation, produceRecords, readAll } from './records.js';

/**
 * Stage `embed` embeds the input; `dedupe-ref` runs undisturbed on its output and gives the reference
 * decisions; `dedupe` (input `embedded-feed`, fed by the test) is the one killed, restarted and doubled.
 * Snapshots of `dedupe` go under `DEDUPE_STATE_DIR`.
 */
export const DEDUPE_TOPOLOGY = 'topologies/test/dedupe-state.yaml';
/** Records in the input. */
export const DEDUPE_N = 400;

export const TOPICS = [
  'reversing a linked list in Python', 'the ocean at night', 'the health benefits of green tea', 'TCP versus UDP',
  'vegetarian lasagna', 'the Mona Lisa', 'improving sleep quality', 'the causes of the French Revolution',
  'black holes', 'sourdough bread', 'filing tax returns', 'chess openings', 'SQL joins', 'marathon training',
  'French verb conjugation', 'photosynthesis', 'the stock market', 'learning the guitar', 'climate change', 'Roman history',
];
const ASKS = ['Explain', 'Write a short poem about', 'Give me three tips on', 'What is the history of', 'Summarize'];
const VARIANTS = ['', ' please', ' for a beginner', ' briefly', ' in detail'];

/** 100 distinct instructions, then 300 repeats of them, exact or lightly reworded, in a fixed order. */
export function conversations(): Conversation[] {
  return Array.from({ length: DEDUPE_N }, (_, i) => {
    const j = i < 100 ? i : (i * 37) % 100;
    const text = `${ASKS[Math.floor(j / TOPICS.length)]} ${TOPICS[j % TOPICS.length]}${i < 100 ? '' : VARIANTS[i % VARIANTS.length]}.`;
    return makeConversation(i, text);
  });
}

export type Decision = Pick<Conversation, 'uuid' | 'min_neighbor_distance' | 'min_similar_uuid' | 'repeat_count' | 'is_duplicate'>;
export const decisionOf = (r: Conversation): Decision => ({ uuid: r.uuid, min_neighbor_distance: r.min_neighbor_distance, min_similar_uuid: r.min_similar_uuid, repeat_count: r.repeat_count, is_duplicate: r.is_duplicate });

/** A record as `embed` wrote it. */
export interface EmbeddedRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

export interface DedupeReference {
  /** The decisions of the undisturbed stage `dedupe-ref`, in input order. */
  expected: Decision[];
  /** The records `embed` wrote, in order, as written: the input of the stage under test. */
  embedded: EmbeddedRecord[];
  /** The same records, decoded. */
  values: Conversation[];
}

const stageOf = (topology: Topology, name: string) => topology.stages.find((s) => s.name === name)!;

/**
 * Writes the conversations to the input of `embed` (the topics must exist), runs `embed` and `dedupe-ref` in
 * this process until they have handled all of it, and returns the reference decisions and the embedded
 * records. The embeddings are computed once here; the stage under test reads them, not a model.
 */
export async function dedupeReference(topology: Topology, kafka: Kafka, serde: RecordSerde, logger: Logger): Promise<DedupeReference> {
  const embed = stageOf(topology, 'embed');
  await produceRecords(kafka, serde, embed.input!, 'magpie.Conversation', conversations());
  const run = await runTopology(topology, logger, { stages: ['embed', 'dedupe-ref'] });
  try {
    await waitUntilDrained(run);
  } finally {
    await run.stop();
  }
  const expected = (await readAll<Conversation>(kafka, serde, stageOf(topology, 'dedupe-ref').ports.out!, 'magpie.Conversation')).map(decisionOf);
  expect(expected).toHaveLength(DEDUPE_N);
  expect(expected.filter((d) => d.is_duplicate).length).toBeGreaterThan(DEDUPE_N / 4);
  expect(expected.filter((d) => !d.is_duplicate).length).toBeGreaterThan(TOPICS.length);
  const embedded: EmbeddedRecord[] = [];
  const values: Conversation[] = [];
  await readTopic(kafka, embed.ports.out!, async (raw) => {
    embedded.push({ key: raw.key, value: raw.value, headers: raw.headers });
    values.push(await serde.decode<Conversation>('magpie.Conversation', raw.value, raw.headers));
  });
  expect(embedded).toHaveLength(DEDUPE_N);
  return { expected, embedded, values };
}

/** The seqs of a changelog topic in offset order: a restorable one holds 0..n-1, no gap and no repeat. */
export async function changelogSeqs(kafka: Kafka, serde: RecordSerde, topic: string): Promise<number[]> {
  return (await readAll<IndexEntry>(kafka, serde, topic, 'magpie.IndexEntry')).map((e) => Number(e.seq));
}

/** Log lines of the processes that tell of a failed restore or a snapshot that failed its checksum. */
export function restoreFailures(processes: StageProcess[]): string[] {
  return processes.flatMap((p) => p.lines.map((l) => `${l.msg} ${JSON.stringify(l)}`).filter((text) => /cannot restore|does not match its checksum/.test(text)));
}
