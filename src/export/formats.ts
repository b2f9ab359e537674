import type { Conversation, Turn } from '../serde/records.generated.js';
import type { SchemaName } from '../serde/schemas.js';

/**
 * Training-data layouts an export can write, one pure function each. A record a format cannot express is
 * skipped with a reason (counted in the export's summary), never dropped silently.
 */
export const EXPORT_FORMATS = ['sharegpt', 'openai', 'alpaca', 'dpo'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/**
 * What becomes of a reasoning model's thinking part: `drop` exports the answer alone; `keep` puts the thinking
 * before the first answer as `<think>…</think>` (the layout reasoning SFT trains on) and, in ShareGPT, also in
 * its own `reasoning` column.
 */
export const REASONING_MODES = ['drop', 'keep'] as const;
export type ReasoningMode = (typeof REASONING_MODES)[number];

export interface FormatOptions {
  reasoning: ReasoningMode;
}
export const DEFAULT_FORMAT_OPTIONS: FormatOptions = { reasoning: 'drop' };

/** A decoded record with the name of the schema it was written with. */
export interface ExportRecord {
  schema: SchemaName;
  value: unknown;
}

/** Why a record was left out; the keys of an export summary. */
export const SKIP_REASONS = {
  not_a_conversation: 'not a magpie.Conversation (no response to export)',
  no_preference_pair: 'no chosen/rejected responses (DPO needs a preference-pair record)',
  undecodable: 'could not be decoded (no or unknown writer schema, or corrupt bytes)',
  not_longest: 'response not among the --longest N longest',
} as const;
export type SkipReason = keyof typeof SKIP_REASONS;

export type Formatted = { row: Record<string, unknown> } | { skip: SkipReason };

/** One row of the released Magpie datasets' layout (MAGPIE.md section 8): the conversation and every tag. */
export interface ShareGptRow {
  uuid: string;
  model: string;
  gen_input_configs: { temperature: number; top_p: number; input_generator: string; seed: number | null; pre_query_template: string };
  instruction: string;
  response: string;
  conversations: { from: 'human' | 'gpt'; value: string }[];
  intent: string | null;
  knowledge: string | null;
  difficulty: string | null;
  difficulty_generator: string | null;
  input_quality: string | null;
  quality_explanation: string | null;
  quality_generator: string | null;
  task_category: string | null;
  other_task_category: string[];
  task_category_generator: string | null;
  llama_guard_2: string | null;
  instruct_reward: number | null;
  reward_model: string | null;
  language: string | null;
  min_neighbor_distance: number | null;
  repeat_count: number | null;
  min_similar_uuid: string | null;
  instruction_length: number;
  response_length: number;
  /** With reasoning 'keep' only. */
  reasoning?: string | null;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

const ROLE_OF: Record<Turn['from'], ChatMessage['role']> = { system: 'system', human: 'user', gpt: 'assistant' };

/** The answer with the thinking before it, as a reasoning model wrote it. */
export function withThinking(reasoning: string, answer: string): string {
  return `<think>\n${reasoning}\n</think>\n\n${answer}`;
}

/**
 * The record's turns; a record written without them still has its instruction and response. With reasoning
 * kept, the first answer carries the thinking that preceded it.
 */
function turnsOf(c: Conversation, options: FormatOptions = DEFAULT_FORMAT_OPTIONS): Turn[] {
  const turns: Turn[] = c.conversations.length > 0 ? c.conversations : [{ from: 'human', value: c.instruction }, { from: 'gpt', value: c.response }];
  if (options.reasoning === 'drop' || !c.reasoning) return turns;
  const first = turns.findIndex((t) => t.from === 'gpt');
  return turns.map((t, i) => (i === first ? { from: t.from, value: withThinking(c.reasoning!, t.value) } : t));
}

export function toShareGpt(c: Conversation, options: FormatOptions = DEFAULT_FORMAT_OPTIONS): ShareGptRow {
  const g = c.gen_input_configs;
  return {
    uuid: c.uuid,
    model: c.model,
    gen_input_configs: { temperature: g.temperature, top_p: g.top_p, input_generator: g.input_generator, seed: g.seed, pre_query_template: g.pre_query_template },
    instruction: c.instruction,
    response: c.response,
    // The released layout has human and gpt turns only; a system prompt stays out, as there.
    conversations: turnsOf(c, options).flatMap((t) => (t.from === 'system' ? [] : [{ from: t.from, value: t.value }])),
    intent: c.intent,
    knowledge: c.knowledge,
    difficulty: c.difficulty,
    difficulty_generator: c.difficulty_generator,
    input_quality: c.input_quality,
    quality_explanation: c.quality_explanation,
    quality_generator: c.quality_generator,
    task_category: c.task_category,
    other_task_category: c.other_task_category,
    task_category_generator: c.task_category_generator,
    llama_guard_2: c.llama_guard_2,
    instruct_reward: c.instruct_reward,
    reward_model: c.reward_model,
    language: c.language,
    min_neighbor_distance: c.min_neighbor_distance,
    repeat_count: c.repeat_count,
    min_similar_uuid: c.min_similar_uuid,
    instruction_length: c.instruction_length,
    response_length: c.response_length,
    ...(options.reasoning === 'keep' ? { reasoning: c.reasoning } : {}),
  };
}

export function toOpenAi(c: Conversation, options: FormatOptions = DEFAULT_FORMAT_OPTIONS): { messages: ChatMessage[] } {
  return { messages: turnsOf(c, options).map((t) => ({ role: ROLE_OF[t.from], content: t.value })) };
}

export function toAlpaca(c: Conversation, options: FormatOptions = DEFAULT_FORMAT_OPTIONS): { instruction: string; input: string; output: string } {
  return { instruction: c.instruction, input: '', output: options.reasoning === 'keep' && c.reasoning ? withThinking(c.reasoning, c.response) : c.response };
}

/**
 * A response given as text, or as chat messages (`{role, content}` or `{from, value}`, as in the released
 * Magpie DPO sets, where chosen is [user, assistant]): the last assistant message.
 */
function responseText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) return undefined;
  for (let i = value.length - 1; i >= 0; i--) {
    const m = value[i] as Record<string, unknown> | null;
    const role = m?.role ?? m?.from;
    const text = m?.content ?? m?.value;
    if ((role === 'assistant' || role === 'gpt') && typeof text === 'string') return text;
  }
  return undefined;
}

function firstUserText(value: unknown): string | undefined {
  if (!Array.isArray(value)) return undefined;
  const m = value.find((v: Record<string, unknown> | null) => v?.role === 'user' || v?.from === 'human') as Record<string, unknown> | undefined;
  const text = m?.content ?? m?.value;
  return typeof text === 'string' ? text : undefined;
}

/**
 * DPO triple from any record with `chosen` and `rejected` (text or chat messages); the prompt is its `prompt`,
 * else its `instruction`, else the first user message of `chosen`.
 */
export function toDpo(value: Record<string, unknown>): { prompt: string; chosen: string; rejected: string } | undefined {
  const chosen = responseText(value.chosen);
  const rejected = responseText(value.rejected);
  const prompt = [value.prompt, value.instruction, firstUserText(value.chosen)].find((p): p is string => typeof p === 'string');
  if (chosen === undefined || rejected === undefined || prompt === undefined) return undefined;
  return { prompt, chosen, rejected };
}

export function formatRecord(format: ExportFormat, record: ExportRecord, options: FormatOptions = DEFAULT_FORMAT_OPTIONS): Formatted {
  if (format === 'dpo') {
    const row = record.value !== null && typeof record.value === 'object' ? toDpo(record.value as Record<string, unknown>) : undefined;
    return row ? { row } : { skip: 'no_preference_pair' };
  }
  if (record.schema !== 'magpie.Conversation') return { skip: 'not_a_conversation' };
  const c = record.value as Conversation;
  switch (format) {
    case 'sharegpt':
      return { row: { ...toShareGpt(c, options) } };
    case 'openai':
      return { row: toOpenAi(c, options) };
    case 'alpaca':
      return { row: toAlpaca(c, options) };
  }
}
