import { z } from 'zod';
import type { Conversation } from '../serde/records.generated.js';
import { extractJson, JUDGE_TASKS, type JudgeTask } from './judge-prompts.js';
import { defineProcessor, type Processor } from './stage.js';
import { askJudge, DEFAULT_JUDGE_SAMPLING, judgeSamplingSchema, recordTag, skipDuplicatesField, skipIfDuplicate, tagEach } from './tagging.js';

const config = z.strictObject({
  /** Name of an inference backend declared in the topology. */
  backend: z.string().min(1),
  task: z.enum(['task_category', 'difficulty', 'input_quality']),
  sampling: judgeSamplingSchema.default(DEFAULT_JUDGE_SAMPLING),
  /** Judge requests in flight per batch; a continuous-batching server wants many (`concurrency` is input partitions). */
  maxInFlight: z.number().int().min(1).max(1024).default(8),
  /** Send the answer's JSON schema for constrained decoding; turn off for backends that reject it. */
  constrainOutput: z.boolean().default(true),
  /** Leave records already marked is_duplicate untagged (null, with the reason in tag_failures). */
  skipDuplicates: skipDuplicatesField,
});

/** The record fields each judge task writes, from its parsed answer. */
function judgementFields(task: JudgeTask, answer: unknown): Partial<Conversation> {
  switch (task) {
    case 'task_category': {
      const a = answer as z.infer<typeof JUDGE_TASKS.task_category.output>;
      return { task_category: a.primary_tag, other_task_category: [...new Set(a.other_tags)].filter((t) => t !== a.primary_tag) };
    }
    case 'difficulty': {
      const a = answer as z.infer<typeof JUDGE_TASKS.difficulty.output>;
      return { intent: a.intent, knowledge: a.knowledge, difficulty: a.difficulty };
    }
    case 'input_quality': {
      const a = answer as z.infer<typeof JUDGE_TASKS.input_quality.output>;
      return { input_quality: a.input_quality, quality_explanation: a.explanation };
    }
  }
}

/** The field naming the judge's model, as in the released Magpie datasets. */
const GENERATOR_FIELD = {
  task_category: 'task_category_generator',
  difficulty: 'difficulty_generator',
  input_quality: 'quality_generator',
} as const satisfies Record<JudgeTask, keyof Conversation>;

/** The fields each judge task sets (other_task_category is always a list, so task_category stands for it). */
const JUDGEMENT_FIELDS: Record<JudgeTask, readonly (keyof Conversation)[]> = {
  task_category: ['task_category'],
  difficulty: ['intent', 'knowledge', 'difficulty'],
  input_quality: ['input_quality', 'quality_explanation'],
};

/**
 * Magpie's LLM-judge tags (task_category, difficulty with intent and knowledge, input_quality with an
 * explanation) from one backend. Output that never parses goes to tag_failures; the record always flows.
 */
export const tagLlmJudge = defineProcessor({
  type: 'tag-llm-judge',
  description: 'Tags the instruction with an LLM judge (JSON answer): task_category + other_task_category, difficulty + intent + knowledge, or input_quality + quality_explanation.',
  config,
  inputSchema: 'magpie.Conversation',
  outputSchema: 'magpie.Conversation',
  writesFields: (cfg) => JUDGEMENT_FIELDS[cfg.task],
  uses: (cfg) => ({ backends: [cfg.backend] }),
  create: (cfg, deps): Processor<Conversation, Conversation> => {
    const backend = deps.backend(cfg.backend);
    const spec = JUDGE_TASKS[cfg.task];
    const parse = (text: string) => {
      const parsed = spec.output.safeParse(extractJson(text));
      if (!parsed.success) throw new Error(z.prettifyError(parsed.error).replaceAll('\n', ' '));
      return parsed.data;
    };
    return {
      process: (batch, ctx) =>
        tagEach(batch, ctx, cfg.maxInFlight, async (record, signal) => {
          const skipped = skipIfDuplicate(record, cfg.task, cfg.skipDuplicates);
          if (skipped) return skipped;
          const request = { messages: spec.messages(record.instruction), jsonSchema: cfg.constrainOutput ? spec.jsonSchema : undefined };
          const judged = await askJudge(backend, request, cfg.sampling, parse, signal);
          return recordTag(record, cfg.task, judged, (answer) => ({ ...judgementFields(cfg.task, answer), [GENERATOR_FIELD[cfg.task]]: backend.model }));
        }),
    };
  },
});
