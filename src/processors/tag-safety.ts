import { z } from 'zod';
import type { ChatMessage } from '../inference/backend.js';
import type { Conversation } from '../serde/records.generated.js';
import { parseSafetyVerdict, safetyPromptMessages } from './judge-prompts.js';
import { defineProcessor, type Processor } from './stage.js';
import { askJudge, judgeSamplingSchema, recordTag, skipDuplicatesField, skipIfDuplicate, tagEach } from './tagging.js';

const TAG = 'llama_guard_2';

const config = z.strictObject({
  /** Name of an inference backend declared in the topology. */
  backend: z.string().min(1),
  /**
   * model-template: send the conversation as chat turns, for a Llama Guard model whose chat template holds
   * the policy. builtin: one message with our Llama-Guard-style policy prompt, for any chat model.
   */
  prompt: z.enum(['model-template', 'builtin']).default('model-template'),
  /** Whose turn is judged: the instruction (user), or the response in context (agent). */
  assess: z.enum(['user', 'agent']).default('agent'),
  sampling: judgeSamplingSchema.default({ temperature: 0, topP: 1, maxTokens: 16, retries: 2, retryTemperature: 0.7 }),
  /** Judge requests in flight per batch (the common `concurrency` is input partitions). */
  maxInFlight: z.number().int().min(1).max(1024).default(8),
  /** Leave records already marked is_duplicate untagged (null, with the reason in tag_failures). */
  skipDuplicates: skipDuplicatesField,
});
type Config = z.infer<typeof config>;

function safetyMessages(cfg: Config, record: Conversation): ChatMessage[] {
  const response = cfg.assess === 'agent' ? record.response : null;
  if (cfg.prompt === 'builtin') return safetyPromptMessages(record.instruction, response, cfg.assess);
  return [{ role: 'user', content: record.instruction }, ...(response === null ? [] : [{ role: 'assistant' as const, content: response }])];
}

/** Llama Guard verdict on the instruction or the response: `safe` or `unsafe\nS<n>` in llama_guard_2. */
export const tagSafety = defineProcessor({
  type: 'tag-safety',
  description: 'Moderates the conversation with a Llama-Guard-style classifier on a backend: sets llama_guard_2 to safe or unsafe plus category codes.',
  config,
  inputSchema: 'magpie.Conversation',
  outputSchema: 'magpie.Conversation',
  writesFields: () => ['llama_guard_2'],
  uses: (cfg) => ({ backends: [cfg.backend] }),
  create: (cfg, deps): Processor<Conversation, Conversation> => {
    const backend = deps.backend(cfg.backend);
    return {
      process: (batch, ctx) =>
        tagEach(batch, ctx, cfg.maxInFlight, async (record, signal) => {
          const skipped = skipIfDuplicate(record, TAG, cfg.skipDuplicates);
          if (skipped) return skipped;
          const judged = await askJudge(backend, { messages: safetyMessages(cfg, record) }, cfg.sampling, parseSafetyVerdict, signal);
          return recordTag(record, TAG, judged, (verdict) => ({ llama_guard_2: verdict }));
        }),
    };
  },
});
