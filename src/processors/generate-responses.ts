import { z } from 'zod';
import { errorMessage } from '../core/errors.js';
import { withRetry } from '../core/retry.js';
import type { ChatMessage, InferenceBackend, Sampling } from '../inference/backend.js';
import { loadTemplate } from '../inference/template-derive.js';
import { reasoningTagsSchema, splitReasoning } from '../inference/reasoning.js';
import { resolveSystemPrompt, templateConfigSchema, type ChatTemplate } from '../inference/templates.js';
import type { Conversation, Instruction, Turn } from '../serde/records.generated.js';
import { cleanInstruction, cleanupConfigSchema, DEFAULT_CLEANUP, DEFAULT_INSTRUCTION_STOP, instructionStops, instructionStopSchema } from './instruction-cleanup.js';
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
  /**
   * System prompt of the prompt that writes a follow-up user turn (never of the answers), as in Magpie-MT: a
   * built-in name or text; false for none.
   */
  followUpSystemPrompt: z.union([z.string().min(1), z.literal(false)]).default('multiturn'),
  /** Stop strings for follow-up user turns on top of the template's, as for instructions. */
  followUpStop: instructionStopSchema.default(DEFAULT_INSTRUCTION_STOP),
  /** Instructions longer than this are rejected before any inference is spent on them. */
  maxInstructionChars: z.number().int().min(1).default(16_000),
  /**
   * A reasoning model: its thinking, between these tags at the start of the text, goes to `reasoning` and the
   * rest to `response`. A thinking part the server returns apart (vLLM `reasoning_content`) is kept either way.
   */
  reasoning: reasoningTagsSchema.optional(),
  cleanup: cleanupConfigSchema.default(DEFAULT_CLEANUP),
});

type Config = z.infer<typeof config>;

/** Magpie step 2 (and 3): answers each instruction with the same model, through its full chat template. */
export class ResponseGenerator {
  private template: Promise<ChatTemplate> | undefined;
  private readonly followUpSystem: string | undefined;

  constructor(
    private readonly backend: InferenceBackend,
    private readonly config: Config,
  ) {
    this.followUpSystem = config.followUpSystemPrompt === false ? undefined : resolveSystemPrompt(config.followUpSystemPrompt);
  }

  /** Resolves the template (derived from the model's own for `auto`) before the first record. */
  async init(): Promise<void> {
    await this.chatTemplate();
  }

  private chatTemplate(): Promise<ChatTemplate> {
    this.template ??= loadTemplate(this.config.template, this.backend).then((r) => r.template);
    return this.template;
  }

  private async generate(messages: ChatMessage[], sampling: Sampling, ctx: StageContext, followUp: boolean) {
    const common = { temperature: sampling.temperature, topP: sampling.topP, maxTokens: sampling.maxTokens, repetitionPenalty: sampling.repetitionPenalty ?? 1, signal: ctx.signal };
    const template = await this.chatTemplate();
    const stopTokenIds = [...template.stopTokenIds];
    const call = () => {
      if (followUp) {
        // The model writes the next user turn: the multi-turn system prompt (only here, never in the answers'
        // prompts), the exchange so far, then the template's user header.
        const exchange = messages.filter((m) => m.role !== 'system');
        const prompt = template.multiTurnPreQuery(this.followUpSystem === undefined ? exchange : [{ role: 'system', content: this.followUpSystem }, ...exchange]);
        return this.backend.complete({ ...common, prompt, stop: instructionStops(template, this.config.followUpStop), stopTokenIds });
      }
      const stop = [...template.stop];
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
    let firstReasoning: string | undefined;
    let responseFinish = 'stop';
    let user = ins.instruction.trim();
    for (let turn = 1; ; turn++) {
      messages.push({ role: 'user', content: user });
      turns.push({ from: 'human', value: user });
      const answer = await this.generate(messages, sampling, ctx, false);
      const split = this.config.reasoning ? splitReasoning(answer.text, this.config.reasoning) : { reasoning: undefined, answer: answer.text.trim(), unfinished: false };
      if (split.unfinished) {
        const cut = answer.finishReason === 'length' ? ` (cut at maxTokens ${sampling.maxTokens})` : '';
        return reject('unfinished_reasoning', `turn ${turn}: the thinking part has no ${this.config.reasoning!.closeTag}${cut}, so there is no answer`, ins);
      }
      const text = split.answer;
      if (text.length === 0) return reject('empty_response', `the model gave an empty answer in turn ${turn}`, ins);
      messages.push({ role: 'assistant', content: text });
      turns.push({ from: 'gpt', value: text });
      responseTokens += answer.tokens;
      if (turn === 1) {
        firstResponse = text;
        firstReasoning = answer.reasoning?.trim() || split.reasoning || undefined;
        responseFinish = answer.finishReason;
      } else if (answer.finishReason === 'length') {
        responseFinish = 'length';
      }
      if (turn >= this.config.turns) break;
      const next = await this.generate(messages, this.config.followUpSampling, ctx, true);
      const template = await this.chatTemplate();
      const verdict = cleanInstruction(next.text, next.finishReason, (t) => template.leak(t), this.config.cleanup);
      if (verdict.rejected) return reject(`follow_up_${verdict.rejected.rule}`, `turn ${turn + 1}: ${verdict.rejected.reason}`, ins);
      user = verdict.text;
    }
    const value: Conversation = {
      uuid: ins.uuid,
      model: this.backend.model,
      gen_input_configs: ins.gen_input_configs,
      instruction: ins.instruction.trim(),
      response: firstResponse,
      reasoning: firstReasoning ?? null,
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
      base_output: null, base_reward: null, reward_difference: null,
      language: null, task_category_generator: null, difficulty_generator: null, quality_generator: null, embedding: null, embedding_model: null, min_neighbor_distance: null, min_similar_uuid: null,
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
  uses: (c) => ({ backends: [c.backend] }),
  create: (c, deps) => {
    const generator = new ResponseGenerator(deps.backend(c.backend), c);
    // All records of a batch at once: the backend bounds concurrency and a batching server fills its batch.
    return { init: () => generator.init(), process: (batch, ctx) => eachRecord(batch, (r) => generator.answer(r.value as Instruction, ctx)) };
  },
});
