/**
 * The released Magpie recipes (topologies/magpie-*.yaml) end to end on a real broker, every inference endpoint
 * (instruct model, judge, base model, reasoning model, reward model) served by the in-test OpenAI-compatible
 * server, embeddings by the real MiniLM model. Each recipe runs with its own thresholds and small counts.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportTopic } from '../../../src/export/export-topic.js';
import type { Conversation, Instruction, Rejected } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { runTopology, type RunningTopology } from '../../../src/topology/build.js';
import { waitUntilDrained } from '../../../src/topology/drain.js';
import { loadTopologyFile, type Topology } from '../../../src/topology/load.js';
import { uniquePrefix } from '../../support/broker.js';
import { FaultyOpenAIServer, type ChatRequestBody } from '../../support/faults/openai-server.js';
import { readAll } from '../../support/records.js';
import { topologyTestContext } from '../../support/topology-run.js';

const { logger, bootstrap, track } = topologyTestContext();
const serde = createSerde();

const QUESTIONS = [
  'How do I reverse a linked list in Python?', 'Write a short poem about the ocean at night.', 'What are the health benefits of green tea?',
  'Explain the difference between TCP and UDP.', 'Give me a recipe for vegetarian lasagna.', 'Who painted the Mona Lisa?',
  'Solve for x: 3x + 7 = 22.', 'What causes the seasons on Earth?', 'Translate "good morning" into Japanese.',
  'How should I prepare for a job interview at a bank?', 'Summarise the plot of Hamlet in three sentences.', 'Why do cats purr?',
  'Plan a three-day trip to Lisbon on a budget.', 'What is the derivative of sin(x) * x^2?', 'Write a SQL query that finds duplicate emails.',
  'How does a bicycle stay upright?', 'Suggest names for a coffee shop near a library.', 'What is the capital of Australia?',
  'How do vaccines train the immune system?', 'Compare renting and buying a home in your thirties.',
];
// Judged poor: the filters of every recipe reject these.
const POOR = new Set(['Who painted the Mona Lisa?', 'Why do cats purr?', 'What is the capital of Australia?']);

/** Bodies of the pre-query (instruction) requests the server has seen. */
const preQueries: ChatRequestBody[] = [];

/** One server for every model of a recipe: what it answers depends on the request, as each real model would. */
function recipeServer(): FaultyOpenAIServer {
  let asked = 0;
  const instructionOf = (text: string) => QUESTIONS.find((q) => text.includes(q)) ?? '';
  return new FaultyOpenAIServer((body: ChatRequestBody) => {
    const last = body.messages?.at(-1)?.content;
    if (last !== undefined) {
      if (last.includes('"primary_tag"')) return '{"primary_tag": "Math", "other_tags": []}';
      if (last.includes('"difficulty": "<')) return `{"intent": "The user wants help.", "knowledge": "General knowledge.", "difficulty": "${instructionOf(last).length % 2 === 0 ? 'hard' : 'easy'}"}`;
      if (last.includes('"input_quality": "<')) return `{"explanation": "Clear.", "input_quality": "${POOR.has(instructionOf(last)) ? 'poor' : 'good'}"}`;
      if (last.includes('content-safety classifier')) return 'safe';
      // A reasoning model: half the answers come with the thinking apart (a reasoning parser), half inline.
      const i = QUESTIONS.indexOf(last);
      return i % 2 === 0 ? { text: `The answer to "${last}" is worked out above.`, reasoning: `First, restate: ${last} Then reason step by step.` } : `<think>\nLet me think about: ${last}\n</think>\n\nHere is the answer to "${last}".`;
    }
    const prompt = body.prompt ?? '';
    // The base model answers from the reward-difference prompt: long for odd questions, so some differences are negative.
    if (prompt.includes('# Answer:')) return QUESTIONS.indexOf(instructionOf(prompt)) % 2 === 1 ? 'x'.repeat(400) : 'Short.';
    if (prompt.endsWith('<|start_header_id|>user<|end_header_id|>\n\n') || prompt.endsWith('<|im_start|>user\n')) {
      preQueries.push(body);
      return QUESTIONS[asked++ % QUESTIONS.length]!;
    }
    // Answers of every fourth question run over several lines (the Llama-3.1 filter counts line breaks).
    const q = QUESTIONS.indexOf(instructionOf(prompt));
    return `A careful, complete answer to the question: ${instructionOf(prompt)} ${'detail '.repeat(5 + (asked % 7))}${'\nmore'.repeat(q % 4)}`;
  });
}

interface RecipeRun {
  topology: Topology;
  run: RunningTopology;
  topic: (stage: string) => string;
}

async function runRecipe(file: string, server: FaultyOpenAIServer, env: Record<string, string>): Promise<RecipeRun> {
  const topology = await loadTopologyFile(file, {
    topicPrefix: uniquePrefix(path.basename(file, '.yaml')),
    brokers: [bootstrap],
    env: {
      ...process.env, PARTITIONS: '2', MAGPIE_VLLM_URL: server.url, MAGPIE_JUDGE_URL: server.url, MAGPIE_BASE_URL: server.url,
      MAGPIE_REASONING_URL: server.url, MAGPIE_REWARD_URL: server.url, SAMPLES_PER_REQUEST: '2', IN_FLIGHT: '4', ...env,
    },
  });
  const run = track(await runTopology(topology, logger));
  await waitUntilDrained(run);
  return { topology, run, topic: (stage) => topology.stages.find((s) => s.name === stage)!.ports.out! };
}

async function filterOutcome(r: RecipeRun) {
  const tagged = await readAll<Conversation>(r.run.kafka, serde, r.topology.stages.find((s) => s.name === 'filter')!.input!, 'magpie.Conversation');
  const kept = await readAll<Conversation>(r.run.kafka, serde, r.topic('filter'), 'magpie.Conversation');
  const rejects = (await readAll<Rejected>(r.run.kafka, serde, r.topology.stages[0]!.rejects, 'magpie.Rejected')).filter((x) => x.stage === 'filter');
  return { tagged, kept, rejects };
}

const decodingCounts = (instructions: Instruction[]) => {
  const counts: Record<string, number> = {};
  for (const i of instructions) counts[i.gen_input_configs.decoding_key!] = (counts[i.gen_input_configs.decoding_key!] ?? 0) + 1;
  return counts;
};

describe('released Magpie recipes as topologies (real broker, in-test OpenAI-compatible server)', () => {
  const server = recipeServer();
  let dir: string;
  beforeAll(async () => {
    await server.listen();
    dir = await mkdtemp(path.join(tmpdir(), 'magpie-recipes-'));
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('Magpie-Pro: the released decoding mixture exactly, every tag and reward, the paper filter, the longest kept at export', async () => {
    const r = await runRecipe('topologies/magpie-pro.yaml', server, { COUNT_T100: '6', COUNT_T110: '6', COUNT_T120: '6', COUNT_T125: '2', MIN_REWARD: '5' });
    const instructions = await readAll<Instruction>(r.run.kafka, serde, r.topic('instructions'), 'magpie.Instruction');
    expect(decodingCounts(instructions)).toEqual({ 't1-p1': 6, 't1.1-p0.995': 6, 't1.2-p0.995': 6, 't1.25-p0.99': 2 });
    for (const i of instructions) expect(i.gen_input_configs).toMatchObject({ template_family: 'llama3', system_prompt_key: 'none' });
    const { tagged, kept, rejects } = await filterOutcome(r);
    expect(tagged).toHaveLength(20);
    for (const c of tagged) {
      expect(c).toMatchObject({ task_category: 'Math', reward_model: 'sfairXC/FsfairX-LLaMA3-RM-v0.1' });
      expect(c.input_quality).not.toBeNull();
      expect(c.instruct_reward).toBeTypeOf('number');
    }
    expect(kept.length + rejects.length).toBe(tagged.length);
    expect(kept.length).toBeGreaterThan(0);
    expect(rejects.length).toBeGreaterThan(0);
    for (const c of kept) {
      expect(['average', 'good', 'excellent']).toContain(c.input_quality);
      expect(c.instruct_reward!).toBeGreaterThan(5);
      expect(c.min_neighbor_distance === null || c.min_neighbor_distance > 0).toBe(true);
    }
    // Every rejected record broke a rule the kept ones satisfy.
    for (const x of rejects) expect(['input_quality_at_least_average', 'instruct_reward_gt', 'min_neighbor_distance_gt', 'complete_response']).toContain(x.rule);

    const out = path.join(dir, 'pro-longest.jsonl');
    const summary = await exportTopic({ kafka: r.run.kafka, serde, logger, topic: r.topic('filter'), format: 'sharegpt', out, kind: 'jsonl', longest: 3 });
    const rows = (await readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { uuid: string; response_length: number });
    const longest = [...kept].sort((a, b) => b.response_length - a.response_length).slice(0, 3);
    expect(rows.map((x) => x.response_length).sort()).toEqual(longest.map((x) => x.response_length).sort());
    expect(summary).toMatchObject({ written: 3, skipped: { not_longest: kept.length - 3 } });
  }, 240_000);

  it('Magpie-Air: base-model answers and reward differences, filtered on difficulty, quality and difference > 0', async () => {
    const r = await runRecipe('topologies/magpie-air.yaml', server, { COUNT_MAIN: '1', COUNT_HIGH: '1' });
    const instructions = await readAll<Instruction>(r.run.kafka, serde, r.topic('instructions'), 'magpie.Instruction');
    expect(Object.values(decodingCounts(instructions))).toEqual(Array(12).fill(1));
    const { tagged, kept, rejects } = await filterOutcome(r);
    expect(tagged).toHaveLength(12);
    for (const c of tagged) {
      expect(c.base_output).not.toBeNull();
      expect(c.reward_difference).toBeCloseTo(c.instruct_reward! - c.base_reward!, 9);
      // The fake reward model scores a tenth of the classify text's length: the base answer's row proves it was scored.
      expect(c.base_reward).toBeGreaterThan(c.base_output!.length / 10);
    }
    expect(tagged.some((c) => c.reward_difference! < 0)).toBe(true);
    expect(kept.length + rejects.length).toBe(12);
    for (const c of kept) {
      expect(c.reward_difference!).toBeGreaterThan(0);
      expect(['medium', 'hard', 'very hard']).toContain(c.difficulty);
      expect(['good', 'excellent']).toContain(c.input_quality);
    }
  }, 240_000);

  it('Llama-3.1: its instruction temperature, stops with <|eom_id|>, tags, reward, the Pro-500K quality filter', async () => {
    const before = preQueries.length;
    const r = await runRecipe('topologies/magpie-llama31.yaml', server, { COUNT: '8', MAX_RESPONSE_NEWLINES: '2' });
    const sent = preQueries.slice(before);
    expect(sent.length).toBeGreaterThan(0);
    for (const body of sent) expect(body).toMatchObject({ temperature: 0.9, top_p: 1, stop: expect.arrayContaining(['<|eom_id|>', '<|eot_id|>']), stop_token_ids: expect.arrayContaining([128008, 128009]) });
    const instructions = await readAll<Instruction>(r.run.kafka, serde, r.topic('instructions'), 'magpie.Instruction');
    expect(instructions).toHaveLength(8);
    for (const i of instructions) expect(i.gen_input_configs).toMatchObject({ temperature: 0.9, top_p: 1, decoding_key: 't0.9-p1' });
    const { tagged, kept, rejects } = await filterOutcome(r);
    expect(tagged).toHaveLength(8);
    expect(kept.length + rejects.length).toBe(8);
    for (const c of kept) {
      expect(['good', 'excellent']).toContain(c.input_quality);
      expect(c.response.split('\n').length - 1).toBeLessThanOrEqual(2);
    }
    expect(rejects.map((x) => x.rule)).toEqual(expect.arrayContaining(['input_quality_at_least_good', 'response_maxNewlines']));
  }, 240_000);

  it('Reasoning: instructions from one backend, thinking and answer apart from another, exported with and without the thinking', async () => {
    const r = await runRecipe('topologies/magpie-reasoning.yaml', server, { COUNT: '10' });
    const instructions = await readAll<Instruction>(r.run.kafka, serde, r.topic('instructions'), 'magpie.Instruction');
    expect(instructions).toHaveLength(10);
    for (const i of instructions) expect(['math', 'code', 'none']).toContain(i.gen_input_configs.system_prompt_key);
    const responses = await readAll<Conversation>(r.run.kafka, serde, r.topic('responses'), 'magpie.Conversation');
    expect(responses).toHaveLength(10);
    for (const c of responses) {
      expect(c.reasoning).toMatch(/^(First, restate|Let me think about)/);
      expect(c.response).not.toContain('<think>');
      expect(c.gen_input_configs.input_generator).toBe('openai:Qwen/Qwen2-72B-Instruct');
      expect(c.gen_response_configs.output_generator).toBe('openai:Qwen/QwQ-32B-Preview');
    }
    const { kept } = await filterOutcome(r);
    expect(kept.length).toBeGreaterThan(0);

    const read = async (name: string, format: 'sharegpt' | 'openai', reasoning: 'keep' | 'drop') => {
      const out = path.join(dir, name);
      await exportTopic({ kafka: r.run.kafka, serde, logger, topic: r.topic('filter'), format, out, kind: 'jsonl', formatOptions: { reasoning } });
      return (await readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    };
    const byUuid = new Map(kept.map((c) => [c.uuid, c]));
    const kepts = await read('share-keep.jsonl', 'sharegpt', 'keep');
    const drops = await read('share-drop.jsonl', 'sharegpt', 'drop');
    expect(kepts).toHaveLength(kept.length);
    for (const row of kepts) {
      const c = byUuid.get(row.uuid as string)!;
      expect(row.reasoning).toBe(c.reasoning);
      expect((row.conversations as { value: string }[])[1]!.value).toBe(`<think>\n${c.reasoning}\n</think>\n\n${c.response}`);
    }
    for (const row of drops) {
      expect(row).not.toHaveProperty('reasoning');
      expect((row.conversations as { value: string }[])[1]!.value).toBe(byUuid.get(row.uuid as string)!.response);
    }
    const messagesKeep = await read('openai-keep.jsonl', 'openai', 'keep');
    const messagesDrop = await read('openai-drop.jsonl', 'openai', 'drop');
    expect(messagesKeep.every((m) => ((m.messages as { content: string }[])[1]!.content).startsWith('<think>\n'))).toBe(true);
    expect(messagesDrop.every((m) => !((m.messages as { content: string }[])[1]!.content).includes('<think>'))).toBe(true);
  }, 240_000);
});
