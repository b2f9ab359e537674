import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { defaultGgufPath } from '../../src/inference/factory.js';
import { deriveTemplate, readModelChatTemplate } from '../../src/inference/template-derive.js';
import type { ChatTemplate } from '../../src/inference/templates.js';
import { createKafka } from '../../src/kafka/client.js';
import { INPUT_QUALITY_LEVELS, TASK_CATEGORIES } from '../../src/processors/judge-prompts.js';
import type { Conversation, DeadLetter, Instruction, Rejected } from '../../src/serde/records.generated.js';
import { createSerde } from '../../src/serde/serde.js';
import { createTopologyTopics, runTopology, type RunningTopology } from '../../src/topology/build.js';
import { waitUntilDrained } from '../../src/topology/drain.js';
import { loadTopologyFile, type Topology } from '../../src/topology/load.js';
import { uniquePrefix } from '../support/broker.js';
import { makeInstruction, produceRecords, readAll } from '../support/records.js';

/**
 * The embedded default end to end: real broker, real SmolLM2-135M-Instruct (llama.cpp), real MiniLM (ONNX):
 * instructions → responses → embeddings → dedupe → language, task, quality tags → filter → sink.
 */
const COUNT = 32;
const TEMPLATE_TOKENS = ['<|im_start|>', '<|im_end|>', '<|endoftext|>'];
/** The values a well-formed tag takes. */
const TAG_VALUES = { task_category: TASK_CATEGORIES, input_quality: INPUT_QUALITY_LEVELS } as const;
/** Share of sink records that must carry each judge tag rather than a tag failure. */
const MIN_TAGGED_SHARE = 0.5;
/**
 * Requests for an assistant are common real instructions. SmolLM2-135M seldom writes one by itself (none in 64
 * samples), so a few are fed into the instruction topic beside its own, as a second generator would.
 */
const NATURAL = [
  'Can you act as my research assistant and summarise the causes of the French Revolution?',
  'How do I turn off Google Assistant on my phone?',
  'Write a short job ad for an ASSISTANT MANAGER at a bakery.',
].map((text, i) => ({ ...makeInstruction(900 + i, text), model: 'HuggingFaceTB/SmolLM2-135M-Instruct' }));
const naturalUuids = new Set(NATURAL.map((n) => n.uuid));
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const serde = createSerde();
let topology: Topology;
let run: RunningTopology;
let kafka: ReturnType<typeof createKafka>;
/** SmolLM2's own chat template, derived from the GGUF: every control token of its tokenizer is markup. */
let modelTemplate: ChatTemplate;
const topic = (name: string) => `${topology.topics.prefix}${name}`;

beforeAll(async () => {
  topology = await loadTopologyFile('topologies/local.yaml', {
    topicPrefix: uniquePrefix('local'),
    brokers: [inject('kafkaBootstrap')],
    env: { ...process.env, MAGPIE_COUNT: String(COUNT) },
  });
  kafka = createKafka(topology.kafka, logger);
  modelTemplate = deriveTemplate(await readModelChatTemplate(process.env.MAGPIE_LLM_GGUF ?? defaultGgufPath()));
  await createTopologyTopics(kafka, topology, logger);
  await produceRecords(kafka, serde, topic('magpie.instructions'), 'magpie.Instruction', NATURAL);
  run = await runTopology(topology, logger);
  await waitUntilDrained(run);
}, 1_200_000);

afterAll(async () => {
  await run?.stop(0);
});

describe('the local topology on SmolLM2 and MiniLM', () => {
  it('extracts instructions from the pre-query template alone, with their generation config', async () => {
    const instructions = (await readAll<Instruction>(kafka, serde, topic('magpie.instructions'), 'magpie.Instruction')).filter((i) => !naturalUuids.has(i.uuid));
    const rejects = (await readAll<Rejected>(kafka, serde, topic('magpie.rejects'), 'magpie.Rejected')).filter((r) => r.stage === 'instructions');
    // The count is of instructions in the topic: rejected samples are asked for again.
    expect(instructions.length).toBe(COUNT);
    for (const ins of instructions) {
      expect(ins.instruction.trim()).toBe(ins.instruction);
      expect(ins.instruction.length).toBeGreaterThan(0);
      for (const token of TEMPLATE_TOKENS) expect(ins.instruction).not.toContain(token);
      // SmolLM2's own default system prompt precedes the ChatML user header (its chat template does the same).
      expect(ins.gen_input_configs).toMatchObject({ temperature: 1, top_p: 1, max_tokens: 128, template_family: 'smollm2', decoding_key: 't1-p1', system_prompt_key: 'none' });
      expect(ins.gen_input_configs.pre_query_template).toMatch(/^<\|im_start\|>system\n.+<\|im_end\|>\n<\|im_start\|>user\n$/s);
      expect(ins.gen_input_configs.input_generator).toMatch(/^llamacpp:/);
      expect(ins.model).toBe('HuggingFaceTB/SmolLM2-135M-Instruct');
      expect(ins.finish_reason).toBe('stop');
      expect(ins.gen_input_configs.stop).toEqual(TEMPLATE_TOKENS);
    }
    for (const r of rejects) expect(['empty_instruction', 'truncated_instruction', 'template_leak', 'too_short', 'too_long']).toContain(r.rule);
  });

  it('cleans to an instruction set without template markup, and rejects as leaks only real markup', async () => {
    const instructions = (await readAll<Instruction>(kafka, serde, topic('magpie.instructions'), 'magpie.Instruction')).filter((i) => !naturalUuids.has(i.uuid));
    const rejects = (await readAll<Rejected>(kafka, serde, topic('magpie.rejects'), 'magpie.Rejected')).filter((r) => r.stage === 'instructions');
    for (const ins of instructions) {
      expect(modelTemplate.leaks(ins.instruction), ins.instruction).toEqual([]);
      expect(modelTemplate.leak(ins.instruction), ins.instruction).toBeUndefined();
    }
    // Whatever the model wrote: a leak reject always holds markup, so an instruction that merely mentions an
    // assistant was kept.
    for (const r of rejects.filter((x) => x.rule === 'template_leak')) {
      const text = (JSON.parse(r.record_json) as Instruction).instruction;
      expect(modelTemplate.leak(text), text).toBeDefined();
    }
    const mentions = instructions.filter((i) => /assistant/i.test(i.instruction)).length;
    console.info(`[e2e] ${instructions.length} clean instructions (${mentions} mention an assistant), ${rejects.length} rejected: ${rejects.map((r) => r.rule).join(', ')}`);
  });

  it('keeps natural instructions that mention an assistant all the way to the sink', async () => {
    const sink = await readAll<Conversation>(kafka, serde, topic('magpie.sink'), 'magpie.Conversation');
    const kept = sink.filter((c) => naturalUuids.has(c.uuid));
    expect(kept.map((c) => c.instruction).sort()).toEqual(NATURAL.map((n) => n.instruction).sort());
    for (const c of kept) expect(c.response.trim().length).toBeGreaterThan(0);
  });

  it('answers every clean instruction and carries every tag into the sink', async () => {
    const instructions = await readAll<Instruction>(kafka, serde, topic('magpie.instructions'), 'magpie.Instruction');
    const responses = await readAll<Conversation>(kafka, serde, topic('magpie.responses'), 'magpie.Conversation');
    expect(instructions.length).toBeGreaterThanOrEqual(20 + NATURAL.length);
    const rejects = await readAll<Rejected>(kafka, serde, topic('magpie.rejects'), 'magpie.Rejected');
    const responseRejects = rejects.filter((r) => r.stage === 'responses');
    expect(responses.length + responseRejects.length).toBe(instructions.length);
    expect(responses.length).toBeGreaterThanOrEqual(20);
    for (const r of responses) for (const token of TEMPLATE_TOKENS) expect(r.response).not.toContain(token);

    const sink = await readAll<Conversation>(kafka, serde, topic('magpie.sink'), 'magpie.Conversation');
    const filtered = rejects.filter((r) => r.stage === 'filter');
    expect(sink.length + filtered.length).toBe(responses.length);
    expect(sink.length).toBeGreaterThan(0);
    const byUuid = new Map(instructions.map((i) => [i.uuid, i]));
    for (const rec of sink) {
      expect(byUuid.get(rec.uuid)?.instruction).toBe(rec.instruction);
      expect(rec.conversations).toEqual([{ from: 'human', value: rec.instruction }, { from: 'gpt', value: rec.response }]);
      expect(rec.gen_response_configs).toMatchObject({ temperature: 0, max_tokens: 160 });
      expect(rec.embedding_model).toBe('sentence-transformers/all-MiniLM-L6-v2');
      expect(rec.is_duplicate).toBe(false);
      expect(rec.repeat_count).not.toBeNull();
      expect(rec.language).toMatch(/^[a-z]{2,3}$/);
      const failed = new Set(rec.tag_failures.map((f) => f.tag));
      for (const tag of ['task_category', 'input_quality'] as const) {
        if (failed.has(tag)) expect(rec[tag]).toBeNull();
        else expect(TAG_VALUES[tag]).toContain(rec[tag]);
      }
    }
    // Constrained decoding keeps the judge's answers parseable: most records carry each tag, not a failure.
    for (const tag of ['task_category', 'input_quality'] as const) {
      const tagged = sink.filter((rec) => !rec.tag_failures.some((f) => f.tag === tag)).length;
      expect(tagged, `${tag}: ${tagged} of ${sink.length} sink records tagged`).toBeGreaterThanOrEqual(Math.ceil(sink.length * MIN_TAGGED_SHARE));
    }
  });

  it('dead-letters nothing', async () => {
    const dead = await readAll<DeadLetter>(kafka, serde, topic('magpie.dead-letter'), 'magpie.DeadLetter');
    expect(dead.map((d) => `${d.stage}: ${d.code} ${d.reason}`)).toEqual([]);
  });
});
