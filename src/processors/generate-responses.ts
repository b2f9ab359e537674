import { z } from 'zod';
import { errorMessage } from '../core/errors.js';
import { withRetry } from '../core/retry.js';
import type { ChatMessage, InferenceBackend, Sampling } from '../inference/backend.js';
import { resolveTemplate, templateConfigSchema, type ResolvedTemplate } from '../inference/templates.js';
import type { Conversation, Instruction, Turn } from '../serde/records.generated.js';
import { cleanInstruction, cleanupConfigSchema, DEFAULT_CLEANUP } from './instruction-cleanup.js';
import { templateLeak } from './generate-instructions.js';
import { defineProcessor, eachRecord, reject, type Outcome, type StageContext } from './stage.js';

const samplingSchema = z
  .object({
    temperature: z.number().min(0).max(5).default(0),
    topP: z.number().gt(0).max(1).default(1),
    maxTokens: z.number().int().min(1).default(1024),
    repetitionPenalty: z.number().positive().default(1),
  })
  .strict();

const config = z.object({
  backend: z.string(),
  /** The chat template of the backend's model: wraps the conversation for the answer. */
  template: templateConfigSchema,
  sampling: samplingSchema.default({ temperature: 0, topP: 1, maxTokens: 1024, repetitionPenalty: 1 }),
  /** 'completion' formats the chat template here and sends raw text; 'chat' lets the server apply it. */
  mode: z.enum(['completion', 'chat']).default('completion'),
  /** System prompt for the answers (none by default, as in Magpie). */
  systemPrompt: z.string().optional(),
  /** Turns per conversation (Magpie-MT): after each answer the model writes the next user turn itself. */
  turns: z.number().int().min(1).max(16).default(1),
  /** Sampling of follow-up user turns (multi-turn only). */
  followUpSampling: samplingSchema.default({ temperature: 1, topP: 1, maxTokens: 512, repetitionPenalty: 1 }),
  /** Instructions longer than this are rejected before any inference is spent on them. */
  maxInstructionChars: z.number().int().min(1).default(16_000),
  cleanup: cleanupConfigSchema.default(DEFAULT_CLEANUP),
});

type Config = z.infer<typeof config>;

/** Magpie step 2 (and 3): answers each instruction with the same model, through its full chat template. */
export class ResponseGenerator {
  private readonly resolved: ResolvedTemplate;

  constructor(
    private readonly backend: InferenceBackend,
    private readonly config: Config,
  ) {
    this.resolved = resolveTemplate(config.template);
  }

  private async generate(messages: ChatMessage[], sampling: Sampling, ctx: StageContext, followUp: boolean) {
    const common = { temperature: sampling.temperature, topP: sampling.topP, maxTokens: sampling.maxTokens, repetitionPenalty: sampling.repetitionPenalty ?? 1, signal: ctx.signal };
    const template = this.resolved.template;
    const stop = [...template.stop];
    const stopTokenIds = [...template.stopTokenIds];
    const call = () => {
      if (followUp) {
        // The model writes the next user turn: the conversation so far, then the template's user header.
        return this.backend.complete({ ...common, prompt: template.multiTurnPreQuery(messages), stop, stopTokenIds });
      }
      if (this.config.mode === 'chat') return this.backend.chat({ ...common, messages });
      return this.backend.complete({ ...common, prompt: template.formatConversation(messages, { addGenerationPrompt: true }), stop, stopTokenIds });
    };
    const [first] = await withRetry(call, {
      // One more try per record on top of the backend's own retries, so one failure does not redo the whole batch.
      attempts: 2, initialDelayMs: 500, maxDelayMs: 10_000, signal: ctx.signal,
      onRetry: (err, attempt, delayMs) => ctx.logger.warn({ attempt, delayMs, err: errorMessage(err) }, 'response request failed; retrying'),
    });
    if (!first) throw new Error('backend returned no completion');
    return first;
  }

  async answer(ins: Instruction, ctx: StageContext): Promise<Outcome<Conversation>> {
    if (ins.instruction.length > this.config.maxInstructionChars) {
      return reject('instruction_too_long', `instruction has ${ins.instruction.length} characters, more than ${this.config.maxInstructionChars}`, { ...ins, instruction: `${ins.instruction.slice(0, 200)}…` });
    }
    if (ins.instruction.trim().length === 0) return reject('empty_instruction', 'instruction is empty', ins);
    const { sampling } = this.config;
    const messages: ChatMessage[] = this.config.systemPrompt ? [{ role: 'system', content: this.config.systemPrompt }] : [];
    const turns: Turn[] = this.config.systemPrompt ? [{ from: 'system', value: this.config.systemPrompt }] : [];
    let responseTokens = 0;
    let firstResponse = '';
    let responseFinish = 'stop';
    let user = ins.instruction.trim();
    for (let turn = 1; ; turn++) {
      messages.push({ role: 'user', content: user });
      turns.push({ from: 'human', value: user });
      const answer = await this.generate(messages, sampling, ctx, false);
      const text = answer.text.trim();
      if (text.length === 0) return reject('empty_response', `the model gave an empty answer in turn ${turn}`, ins);
      messages.push({ role: 'assistant', content: text });
      turns.push({ from: 'gpt', value: text });
      responseTokens += answer.tokens;
      if (turn === 1) {
        firstResponse = text;
        responseFinish = answer.finishReason;
      } else if (answer.finishReason === 'length') {
        responseFinish = 'length';
      }
      if (turn >= this.config.turns) break;
      const next = await this.generate(messages, this.config.followUpSampling, ctx, true);
      const verdict = cleanInstruction(next.text, next.finishReason, (t) => templateLeak(this.resolved, t), this.config.cleanup);
      if (verdict.rejected) return reject(`follow_up_${verdict.rejected.rule}`, `turn ${turn + 1}: ${verdict.rejected.reason}`, ins);
      user = verdict.text;
    }
    const value: Conversation = {
      uuid: ins.uuid,
      model: this.backend.model,
      gen_input_configs: ins.gen_input_configs,
      instruction: ins.instruction.trim(),
      response: firstResponse,
      conversations: turns,
      gen_response_configs: { temperature: sampling.temperature, top_p: sampling.topP, max_tokens: sampling.maxTokens, repetition_penalty: sampling.repetitionPenalty, output_generator: this.backend.id },
      instruction_finish_reason: ins.finish_reason,
      response_finish_reason: responseFinish,
      instruction_tokens: ins.instruction_tokens,
      response_tokens: responseTokens,
      instruction_length: ins.instruction.trim().length,
      response_length: firstResponse.length,
      task_category: null, other_task_category: [], intent: null, knowledge: null, difficulty: null,
      input_quality: null, quality_explanation: null, llama_guard_2: null, instruct_reward: null, reward_model: null,
      language: null, embedding: null, embedding_model: null, min_neighbor_distance: null, min_similar_uuid: null,
      repeat_count: null, is_duplicate: null, tag_failures: [],
      created_at: Date.now(),
    };
    return { kind: 'emit', records: [{ value, key: ins.uuid }] };
  }
}

export const generateResponses = defineProcessor({
  type: 'generate-responses',
  description: 'Magpie response generation: answers each instruction with the chat template (optionally N turns, the model writing the follow-up user turns).',
  config,
  inputSchema: 'magpie.Instruction',
  outputSchema: 'magpie.Conversation',
  create: (c, deps) => {
    const generator = new ResponseGenerator(deps.backend(c.backend), c);
    // All records of a batch at once: the backend bounds concurrency and a batching server fills its batch.
    return { process: (batch, ctx) => eachRecord(batch, (r) => generator.answer(r.value as Instruction, ctx)) };
  },
});
