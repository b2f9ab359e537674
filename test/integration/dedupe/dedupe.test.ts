import { describe, expect, it } from 'vitest';
import { createKafka } from '../../../src/kafka/client.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { createTopologyTopics, runTopology } from '../../../src/topology/build.js';
import { waitUntilDrained } from '../../../src/topology/drain.js';
import { loadTopologyFile, type Topology } from '../../../src/topology/load.js';
import { uniquePrefix } from '../../support/broker.js';
import { topologyTestContext } from '../../support/topology-run.js';
import { eventually, makeConversation, produceRecords, readAll } from '../../support/records.js';

const { logger, bootstrap, track } = topologyTestContext();
const serde = createSerde();

// Index: 0-3 distinct seeds; then exact copies, light paraphrases and unrelated instructions.
const INSTRUCTIONS = [
  'How do I reverse a linked list in Python?',
  'Write a short poem about the ocean at night.',
  'What are the health benefits of green tea?',
  'Explain the difference between TCP and UDP.',
  'How do I reverse a linked list in Python?', // exact duplicate of 0
  'How can I reverse a linked list using Python?', // paraphrase of 0
  'What health benefits does green tea have?', // paraphrase of 2
  'Give me a recipe for vegetarian lasagna.', // unrelated
  'Explain the difference between TCP and UDP.', // exact duplicate of 3
  'Who painted the Mona Lisa?', // unrelated
];
const EXPECTED_DUPLICATE_OF: Record<number, number> = { 4: 0, 5: 0, 6: 2, 8: 3 };

async function setup(name: string) {
  const topology = await loadTopologyFile('topologies/test/dedupe.yaml', { topicPrefix: uniquePrefix(name), brokers: [bootstrap] });
  const kafka = createKafka(topology.kafka, logger);
  await createTopologyTopics(kafka, topology);
  const p = topology.topics.prefix;
  return { topology, kafka, input: `${p}conversations`, output: `${p}deduped` };
}

async function decisionsOf(kafka: ReturnType<typeof createKafka>, topic: string) {
  const out = await readAll<Conversation>(kafka, serde, topic, 'magpie.Conversation');
  return out.map((r) => ({ uuid: r.uuid, is_duplicate: r.is_duplicate, min_similar_uuid: r.min_similar_uuid, repeat_count: r.repeat_count, min_neighbor_distance: r.min_neighbor_distance, embedding: r.embedding, embedding_model: r.embedding_model }));
}

async function runToEnd(topology: Topology) {
  const run = await runTopology(topology, logger);
  track(run);
  await waitUntilDrained(run);
  return run;
}

describe('near-duplicate removal with the real embedding model on a real broker', () => {
  it('marks exact duplicates and light paraphrases, not unrelated instructions', async () => {
    const t = await setup('dedupe');
    const records = INSTRUCTIONS.map((text, i) => makeConversation(i, text));
    await produceRecords(t.kafka, serde, t.input, 'magpie.Conversation', records);
    await runToEnd(t.topology);
    const out = await decisionsOf(t.kafka, t.output);
    expect(out.map((r) => r.uuid)).toEqual(records.map((r) => r.uuid));
    out.forEach((r, i) => {
      const original = EXPECTED_DUPLICATE_OF[i];
      expect(r.embedding, 'embedding is dropped after use').toBeNull();
      expect(r.embedding_model).toBe('sentence-transformers/all-MiniLM-L6-v2');
      if (original === undefined) {
        expect(r.is_duplicate, `"${INSTRUCTIONS[i]}" is not a duplicate`).toBe(false);
        if (i > 0) expect(r.min_neighbor_distance!).toBeGreaterThan(0.12);
      } else {
        expect(r.is_duplicate, `"${INSTRUCTIONS[i]}" duplicates "${INSTRUCTIONS[original]}"`).toBe(true);
        // The nearest may be any earlier copy of the original's text (an exact duplicate is as near as the original).
        const copies = records.filter((c, j) => j < i && c.instruction === INSTRUCTIONS[original]).map((c) => c.uuid);
        expect(copies).toContain(r.min_similar_uuid);
        expect(r.min_neighbor_distance!).toBeLessThanOrEqual(0.12);
        expect(r.repeat_count!).toBeGreaterThanOrEqual(1);
      }
    });
    expect(out[4]!.min_neighbor_distance!).toBeLessThan(1e-3);
  });

  it('keeps the same decisions when the dedupe stage restarts mid-stream', async () => {
    const records = Array.from({ length: 40 }, (_, i) => makeConversation(i, i % 4 === 3 ? INSTRUCTIONS[i % 10]! : `${INSTRUCTIONS[i % 10]} (variant ${Math.floor(i / 10)})`));

    const reference = await setup('dedupe-ref');
    await produceRecords(reference.kafka, serde, reference.input, 'magpie.Conversation', records);
    await runToEnd(reference.topology);
    const expected = await decisionsOf(reference.kafka, reference.output);
    expect(expected).toHaveLength(40);
    expect(expected.some((r) => r.is_duplicate)).toBe(true);

    const restarted = await setup('dedupe-restart');
    await produceRecords(restarted.kafka, serde, restarted.input, 'magpie.Conversation', records.slice(0, 20));
    const first = await runTopology(restarted.topology, logger);
    await eventually(async () => (await decisionsOf(restarted.kafka, restarted.output)).length >= 8, 120_000, 500);
    await first.stop(0);
    await produceRecords(restarted.kafka, serde, restarted.input, 'magpie.Conversation', records.slice(20));
    await runToEnd(restarted.topology);
    const actual = await decisionsOf(restarted.kafka, restarted.output);
    expect(actual).toEqual(expected);
  });
});
