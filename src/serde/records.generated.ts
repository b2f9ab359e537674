// generated from schemas/ by scripts/gen-types.ts; do not edit.
// Regenerate with `node --import tsx scripts/gen-types.ts` after changing a schema.
//
// Fields with a default are required here too: decoding fills them in. When encoding they may be left out.

/** A user query written by an aligned model from the pre-query template alone (Magpie step 1). */
export interface Instruction {
  uuid: string;
  /** Model that wrote the instruction. */
  model: string;
  gen_input_configs: GenInputConfigs;
  instruction: string;
  /** stop | length | error */
  finish_reason: string;
  /** Default: 0. */
  instruction_tokens: number;
  /** Milliseconds since the Unix epoch. */
  created_at: number;
}

/** How the instruction was sampled; kept on every downstream record. */
export interface GenInputConfigs {
  temperature: number;
  top_p: number;
  max_tokens: number;
  /** Backend and model id that sampled the instruction. */
  input_generator: string;
  /** The sampling seed sent for this sample, if any. Default: null. */
  seed: number | null;
  template_family: string;
  pre_query_template: string;
  /** Default: null. */
  system_prompt: string | null;
  /** Stop strings sent with the request. Default: []. */
  stop: string[];
  /** Stop token ids sent with the request. Default: []. */
  stop_token_ids: number[];
  /** Key of the system prompt drawn from the stage's mixture: none, math, code, translation or a custom key. Default: null. */
  system_prompt_key: string | null;
  /** Name of the decoding setting of the stage's sampling mixture that sampled the instruction. Default: null. */
  decoding_key: string | null;
}

/** An instruction with its response(s) and every tag the pipeline has added so far. Tags are null until their stage has run. */
export interface Conversation {
  uuid: string;
  model: string;
  gen_input_configs: GenInputConfigs;
  instruction: string;
  response: string;
  /** Thinking part of a reasoning model's first answer; response holds the answer alone. Default: null. */
  reasoning: string | null;
  /** All turns, ShareGPT style; a single-turn record has one human and one gpt turn. */
  conversations: Turn[];
  gen_response_configs: GenResponseConfigs;
  /** Default: "stop". */
  instruction_finish_reason: string;
  /** stop | length; length means the response was truncated. Default: "stop". */
  response_finish_reason: string;
  /** Default: 0. */
  instruction_tokens: number;
  /** Default: 0. */
  response_tokens: number;
  /** Characters. Default: 0. */
  instruction_length: number;
  /** Characters. Default: 0. */
  response_length: number;
  /** Default: null. */
  task_category: string | null;
  /** Default: []. */
  other_task_category: string[];
  /** Default: null. */
  intent: string | null;
  /** Default: null. */
  knowledge: string | null;
  /** Default: null. */
  difficulty: string | null;
  /** Default: null. */
  input_quality: string | null;
  /** Default: null. */
  quality_explanation: string | null;
  /** safe, or unsafe followed by the category, e.g. 'unsafe\nS2'. Default: null. */
  llama_guard_2: string | null;
  /** Default: null. */
  instruct_reward: number | null;
  /** Default: null. */
  reward_model: string | null;
  /** A base (non-chat) model's answer to the instruction. Default: null. */
  base_output: string | null;
  /** The reward model's score of base_output. Default: null. */
  base_reward: number | null;
  /** instruct_reward minus base_reward. Default: null. */
  reward_difference: number | null;
  /** ISO 639-1 code where one exists, else ISO 639-3; 'und' when undetermined. Default: null. */
  language: string | null;
  /** Model that judged task_category. Default: null. */
  task_category_generator: string | null;
  /** Model that judged difficulty, intent and knowledge. Default: null. */
  difficulty_generator: string | null;
  /** Model that judged input_quality. Default: null. */
  quality_generator: string | null;
  /** Instruction embedding; dropped by the dedupe stage once used. Default: null. */
  embedding: number[] | null;
  /** Default: null. */
  embedding_model: string | null;
  /** Cosine distance to the nearest earlier instruction. Default: null. */
  min_neighbor_distance: number | null;
  /** Default: null. */
  min_similar_uuid: string | null;
  /** Earlier instructions within the duplicate threshold. Default: null. */
  repeat_count: number | null;
  /** Default: null. */
  is_duplicate: boolean | null;
  /** Tags that could not be computed, with the reason; the record still flows. Default: []. */
  tag_failures: TagFailure[];
  /** Milliseconds since the Unix epoch. */
  created_at: number;
}

export interface Turn {
  from: Speaker;
  value: string;
}

export type Speaker = 'system' | 'human' | 'gpt';

export interface GenResponseConfigs {
  temperature: number;
  top_p: number;
  max_tokens: number;
  /** Default: 1. */
  repetition_penalty: number;
  output_generator: string;
}

export interface TagFailure {
  tag: string;
  reason: string;
}

/** A record a stage could not process, with the reason and everything needed to replay it. */
export interface DeadLetter {
  stage: string;
  /** Stable error code, e.g. SERDE_CORRUPT, INFERENCE_TIMEOUT, PROCESS_FAILED. */
  code: string;
  reason: string;
  source_topic: string;
  source_partition: number;
  source_offset: number;
  /** Default: null. */
  source_key: Buffer | null;
  /** Default: {}. */
  source_headers: Record<string, string>;
  /** The record's bytes exactly as consumed. Default: null. */
  original: Buffer | null;
  /** Default: 1. */
  attempts: number;
  /** Milliseconds since the Unix epoch. */
  failed_at: number;
}

/** One vector of the near-duplicate stage's index, in insertion order: its compacted changelog. Replaying the entries in offset order rebuilds the same index. */
export interface IndexEntry {
  /** The record whose instruction this is; also the message key. */
  uuid: string;
  /** Insertion number in the index, from 0 without gaps. */
  seq: number;
  embedding: number[];
}

/** Magpie preference data (DPO): several sampled responses to one instruction, scored by a reward model; the highest is chosen, the lowest rejected. */
export interface PreferencePair {
  /** The instruction's uuid. */
  uuid: string;
  /** Model that wrote the candidate responses. */
  model: string;
  gen_input_configs: GenInputConfigs;
  instruction: string;
  /** The candidate with the highest reward. */
  chosen: string;
  /** The candidate with the lowest reward. */
  rejected: string;
  chosen_reward: number;
  rejected_reward: number;
  /** Every scored candidate in sampling order, chosen and rejected among them. */
  candidates: ScoredResponse[];
  reward_model: string;
  gen_response_configs: GenResponseConfigs;
  /** Tags below are carried from a tagged input (magpie.Conversation); null for a bare instruction. Default: null. */
  task_category: string | null;
  /** Default: []. */
  other_task_category: string[];
  /** Default: null. */
  intent: string | null;
  /** Default: null. */
  knowledge: string | null;
  /** Default: null. */
  difficulty: string | null;
  /** Default: null. */
  input_quality: string | null;
  /** Default: null. */
  quality_explanation: string | null;
  /** Default: null. */
  llama_guard_2: string | null;
  /** Default: null. */
  language: string | null;
  /** Default: null. */
  min_neighbor_distance: number | null;
  /** Default: null. */
  min_similar_uuid: string | null;
  /** Default: null. */
  repeat_count: number | null;
  /** Milliseconds since the Unix epoch. */
  created_at: number;
}

export interface ScoredResponse {
  response: string;
  reward: number;
  /** stop | length; length means the response was truncated. Default: "stop". */
  finish_reason: string;
  /** Default: 0. */
  tokens: number;
}

/** A record a stage decided not to pass on (clean-up or filter rule), with the rule it failed. Rejects are data, not errors. */
export interface Rejected {
  stage: string;
  /** Stable rule name, e.g. empty_instruction, truncated, template_leak, input_quality. */
  rule: string;
  reason: string;
  /** Default: null. */
  uuid: string | null;
  /** The rejected record as JSON, so a replay with other rules can recover it. */
  record_json: string;
  /** Default: null. */
  source_topic: string | null;
  /** Default: null. */
  source_partition: number | null;
  /** Default: null. */
  source_offset: number | null;
  /** Milliseconds since the Unix epoch. */
  rejected_at: number;
}

/** What a source stage has committed so far, keyed by stage name on a compacted topic and written in the same transaction as its outputs: a restart resumes from it. */
export interface SourceProgress {
  stage: string;
  /** Records written to the output. */
  produced: number;
  /** Default: 0. */
  rejected: number;
  /** Requests started; seeds of later requests continue from here. Default: 0. */
  requests: number;
  /** Records written per decoding setting. Default: {}. */
  produced_by_key: Record<string, number>;
  /** Milliseconds since the Unix epoch. */
  updated_at: number;
}

/** The TS type of each top-level record, by schema name. */
export interface RecordTypes {
  'magpie.Instruction': Instruction;
  'magpie.Conversation': Conversation;
  'magpie.DeadLetter': DeadLetter;
  'magpie.IndexEntry': IndexEntry;
  'magpie.PreferencePair': PreferencePair;
  'magpie.Rejected': Rejected;
  'magpie.SourceProgress': SourceProgress;
}
