import type { FieldDefinition, SchemaDefinition } from '@dsnp/parquetjs';
import type { ExportFormat, FormatOptions } from './formats.js';

// Snappy on every column: what pyarrow and Hugging Face datasets write by default.
const text = (optional = false): FieldDefinition => ({ type: 'UTF8', compression: 'SNAPPY', optional });
const double = (optional = false): FieldDefinition => ({ type: 'DOUBLE', compression: 'SNAPPY', optional });
const int64 = (optional = false): FieldDefinition => ({ type: 'INT64', compression: 'SNAPPY', optional });

/** Parquet columns of each export format, mirroring the rows built in formats.ts. */
export const PARQUET_SCHEMAS: Record<ExportFormat, SchemaDefinition> = {
  sharegpt: {
    uuid: text(),
    model: text(),
    gen_input_configs: {
      fields: { temperature: double(), top_p: double(), input_generator: text(), seed: int64(true), pre_query_template: text() },
    },
    instruction: text(),
    response: text(),
    conversations: { repeated: true, fields: { from: text(), value: text() } },
    intent: text(true),
    knowledge: text(true),
    difficulty: text(true),
    difficulty_generator: text(true),
    input_quality: text(true),
    quality_explanation: text(true),
    quality_generator: text(true),
    task_category: text(true),
    other_task_category: { ...text(), repeated: true },
    task_category_generator: text(true),
    llama_guard_2: text(true),
    instruct_reward: double(true),
    reward_model: text(true),
    language: text(true),
    min_neighbor_distance: double(true),
    repeat_count: int64(true),
    min_similar_uuid: text(true),
    instruction_length: int64(),
    response_length: int64(),
  },
  openai: {
    messages: { repeated: true, fields: { role: text(), content: text() } },
  },
  alpaca: { instruction: text(), input: text(), output: text() },
  dpo: { prompt: text(), chosen: text(), rejected: text() },
};

/** The columns of a format as written with these options: ShareGPT with reasoning kept has a reasoning column. */
export function parquetSchemaOf(format: ExportFormat, options?: FormatOptions): SchemaDefinition {
  const base = PARQUET_SCHEMAS[format];
  return format === 'sharegpt' && options?.reasoning === 'keep' ? { ...base, reasoning: text(true) } : base;
}
