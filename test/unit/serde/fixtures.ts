import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_SCHEMA_DIR, createSchemaSet, type SchemaSet } from '../../../src/serde/avro.js';
import type { Conversation, DeadLetter, IndexEntry, Instruction, PreferencePair, Rejected, SourceProgress } from '../../../src/serde/records.generated.js';
import type { SchemaName } from '../../../src/serde/schemas.js';

export const instruction: Instruction = {
  uuid: '6f1c2a8e-3b7d-4e59-9a10-2c4d5e6f7a8b',
  model: 'Qwen/Qwen2.5-0.5B-Instruct',
  gen_input_configs: {
    temperature: 1,
    top_p: 1,
    max_tokens: 512,
    input_generator: 'llama.cpp:qwen2.5-0.5b-instruct-q4_k_m.gguf',
    seed: 42,
    template_family: 'chatml',
    pre_query_template: '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n',
    system_prompt: 'You are a helpful assistant.',
    stop: ['<|im_start|>', '<|im_end|>', '<|endoftext|>'],
    stop_token_ids: [151643, 151644, 151645],
    system_prompt_key: 'helpful',
    decoding_key: 't1-p1',
  },
  instruction: 'How do I reverse a linked list in place, and what is its time complexity? 🤔',
  finish_reason: 'stop',
  instruction_tokens: 21,
  created_at: 1_764_000_000_123,
};

export const conversation: Conversation = {
  uuid: instruction.uuid,
  model: instruction.model,
  gen_input_configs: instruction.gen_input_configs,
  instruction: instruction.instruction,
  response: 'Walk the list once, pointing each node back at its predecessor. It runs in O(n) time and O(1) space.',
  reasoning: 'Three pointers: previous, current, next.',
  conversations: [
    { from: 'human', value: instruction.instruction },
    { from: 'gpt', value: 'Walk the list once, pointing each node back at its predecessor. It runs in O(n) time and O(1) space.' },
  ],
  gen_response_configs: { temperature: 0, top_p: 1, max_tokens: 2048, repetition_penalty: 1, output_generator: 'llama.cpp:qwen2.5-0.5b-instruct-q4_k_m.gguf' },
  instruction_finish_reason: 'stop',
  response_finish_reason: 'stop',
  instruction_tokens: 21,
  response_tokens: 27,
  instruction_length: 76,
  response_length: 101,
  task_category: 'Coding & Debugging',
  other_task_category: ['Reasoning', 'Information seeking'],
  intent: 'The user wants to reverse a linked list in place.',
  knowledge: 'Linked lists and pointer manipulation.',
  difficulty: 'easy',
  input_quality: 'good',
  quality_explanation: 'Clear and specific.',
  llama_guard_2: 'safe',
  instruct_reward: 3.25,
  reward_model: 'sfairXC/FsfairX-LLaMA3-RM-v0.1',
  base_output: 'Reverse it.',
  base_reward: -1.5,
  reward_difference: 4.75,
  language: 'en',
  task_category_generator: 'meta-llama/Meta-Llama-3-8B-Instruct',
  difficulty_generator: 'meta-llama/Meta-Llama-3-8B-Instruct',
  quality_generator: 'meta-llama/Meta-Llama-3-8B-Instruct',
  // Exactly representable as float32, so the round trip is exact.
  embedding: [0.5, -0.25, 0.125, 0],
  embedding_model: 'Xenova/all-MiniLM-L6-v2',
  min_neighbor_distance: 0.4375,
  min_similar_uuid: '0b7e1c55-aaaa-4bbb-8ccc-000000000001',
  repeat_count: 0,
  is_duplicate: false,
  tag_failures: [{ tag: 'reward', reason: 'INFERENCE_TIMEOUT: reward model did not answer in 60 s' }],
  created_at: 1_764_000_000_456,
};

export const deadLetter: DeadLetter = {
  stage: 'respond',
  code: 'SERDE_CORRUPT',
  reason: 'record at magpie.instructions[2]@17 does not decode',
  source_topic: 'magpie.instructions',
  source_partition: 2,
  source_offset: 17,
  source_key: Buffer.from(instruction.uuid),
  source_headers: { 'magpie-schema': 'magpie.Instruction', 'magpie-schema-fp': 'ab'.repeat(32) },
  original: Buffer.from([0x02, 0xff, 0x00, 0x10]),
  attempts: 3,
  failed_at: 1_764_000_001_000,
};

export const rejected: Rejected = {
  stage: 'clean',
  rule: 'template_leak',
  reason: 'instruction contains <|im_start|>',
  uuid: instruction.uuid,
  record_json: JSON.stringify(instruction),
  source_topic: 'magpie.instructions',
  source_partition: 0,
  source_offset: 5,
  rejected_at: 1_764_000_002_000,
};

export const indexEntry: IndexEntry = { uuid: instruction.uuid, seq: 2 ** 40, embedding: conversation.embedding! };

export const preferencePair: PreferencePair = {
  uuid: instruction.uuid,
  model: instruction.model,
  gen_input_configs: instruction.gen_input_configs,
  instruction: instruction.instruction,
  chosen: conversation.response,
  rejected: 'Use recursion.',
  chosen_reward: 3.25,
  rejected_reward: -1.5,
  candidates: [
    { response: 'Use recursion.', reward: -1.5, finish_reason: 'stop', tokens: 4 },
    { response: conversation.response, reward: 3.25, finish_reason: 'stop', tokens: 27 },
    { response: 'Walk the list and', reward: 0.5, finish_reason: 'length', tokens: 5 },
  ],
  reward_model: 'sfairXC/FsfairX-LLaMA3-RM-v0.1',
  gen_response_configs: { ...conversation.gen_response_configs, temperature: 0.8 },
  task_category: conversation.task_category,
  other_task_category: conversation.other_task_category,
  intent: conversation.intent,
  knowledge: conversation.knowledge,
  difficulty: conversation.difficulty,
  input_quality: conversation.input_quality,
  quality_explanation: conversation.quality_explanation,
  llama_guard_2: conversation.llama_guard_2,
  language: conversation.language,
  min_neighbor_distance: conversation.min_neighbor_distance,
  min_similar_uuid: conversation.min_similar_uuid,
  repeat_count: conversation.repeat_count,
  created_at: 1_764_000_003_000,
};

export const sourceProgress: SourceProgress = { stage: 'instructions', produced: 1_000_000, rejected: 12_345, requests: 250_000, produced_by_key: { 't1-p1': 300_000, 't1.25-p0.99': 100_000 }, updated_at: 1_764_000_004_000 };

export const EXAMPLES: Record<SchemaName, unknown> = {
  'magpie.Instruction': instruction,
  'magpie.Conversation': conversation,
  'magpie.DeadLetter': deadLetter,
  'magpie.Rejected': rejected,
  'magpie.IndexEntry': indexEntry,
  'magpie.PreferencePair': preferencePair,
  'magpie.SourceProgress': sourceProgress,
};

/** The JSON of every schemas/*.avsc file, freshly parsed so a test may change it. */
export function schemaJsons(): { name: string; fields: unknown[] }[] {
  return readdirSync(DEFAULT_SCHEMA_DIR)
    .filter((f) => f.endsWith('.avsc'))
    .map((f) => JSON.parse(readFileSync(join(DEFAULT_SCHEMA_DIR, f), 'utf8')) as { name: string; fields: unknown[] });
}

/** The current schemas with one extra field added to Conversation. */
export function schemasWithConversationField(field: Record<string, unknown>): SchemaSet {
  const jsons = schemaJsons();
  jsons.find((s) => s.name === 'Conversation')!.fields.push(field);
  return createSchemaSet(jsons);
}

/** The evolution the tests use: an optional tag a newer pipeline version adds. */
export const NEW_TAG_FIELD = { name: 'new_tag', type: ['null', 'string'], default: null };
