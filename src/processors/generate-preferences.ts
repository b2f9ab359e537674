import pLimit, { type LimitFunction } from 'p-limit';
import { z } from 'zod';
import { InferenceError } from '../core/errors.js';
import type { ChatMessage, Completion, InferenceBackend } from '../inference/backend.js';
import type { RewardModel } from '../inference/reward.js';
import { loadTemplate } from '../inference/template-derive.js';
import { templateConfigSchema, type ChatTemplate } from '../inference/templates.js';
import type { Conversation, Instruction, PreferencePair, ScoredResponse } from '../serde/records.generated.js';
import { dead, defineProcessor, eachRecord, reject, type InputRecord, type Outcome, type Processor, type StageContext } from './stage.js';

const samplingSchema = z.strictObject({
  temperature: z.number().min(0).max(5).default(0.8),
  topP: z.number().gt(0).max(1).default(1),
  maxTokens: z.number().int().min(1).default(1024),
  repetitionPenalty: z.number().positive().default(1),
});

const config = z.object({
  backend: z.string(),
  /** The chat template of the backend's model: wraps the instruction for the answers. */
  template: templateConfigSchema,
  /** Input records: bare instructions, or tagged conversations whose tags the pairs carry on (their response is not a candidate). */
  schema: z.enum(['magpie.Instruction', 'magpie.Conversation']).default('magpie.Instruction'),
  /** Responses sampled per instruction; the highest-scored becomes chosen, the lowest rejected. */
  candidates: z.number().int().min(2).max(64).default(5),
  /** Sampling of the candidates: diverse enough that the reward model sees different answers. */
  sampling: samplingSchema.default({ temperature: 0.8, topP: 1, maxTokens: 1024, repetitionPenalty: 1 }),
  /** 'completion' formats the chat template here and sends raw text; 'chat' lets the server apply it. */
  mode: z.enum(['completion', 'chat']).default('completion'),
  systemPrompt: z.string().optional(),
  /** Candidates cut at maxTokens are dropped before scoring unless kept: a truncated "chosen" teaches stopping mid-answer. */
  keepTruncated: z.boolean().default(false),
  /** Name of a reward endpoint declared under the topology's rewards. */
  reward: z.string().min(1),
});

type Config = z.infer<typeof config>;
type PreferenceInput = Instruction | Conversation;

/** Tags a tagged input carries into its pair; a bare instruction has none. */
function carriedTags(input: PreferenceInput): Partial<PreferencePair> {
  if (!('task_category' in input)) return {};
  const { task_category, other_task_category, intent, knowledge, difficulty, input_quality, quality_explanation, llama_guard_2, language, min_neighbor_distance, min_similar_uuid, repeat_count } = input;
  return { task_category, other_task_category, intent, knowledge, difficulty, input_quality, quality_explanation, llama_guard_2, language, min_neighbor_distance, min_similar_uuid, repeat_count };
}

/** The first index of the highest and of the lowest reward, in sampling order. */
function extremes(scored: readonly ScoredResponse[]): { best: number; worst: number } {
  let best = 0;
  let worst = 0;
  scored.forEach((c, i) => {
    if (c.reward > scored[best]!.reward) best = i;
    if (c.reward < scored[worst]!.reward) worst = i;
  });
  return { best, worst };
}

/**
 * Magpie preference data (DPO): samples `candidates` answers per instruction, scores each with a reward model
 * and pairs the highest-scored (chosen) with the lowest (rejected).
 */
export class PreferencePairGenerator implements Processor<PreferenceInput, PreferencePair> {
  private template: Promise<ChatTemplate> | undefined;

  constructor(
    private readonly backend: InferenceBackend,
    private readonly rewards: RewardModel,
    private readonly config: Config,
  ) {}

  /** Resolves the template (derived from the model's own for `auto`) before the first record. */
  async init(): Promise<void> {
    await this.chatTemplate();
  }

  private chatTemplate(): Promise<ChatTemplate> {
    this.template ??= loadTemplate(this.config.template, this.backend).then((r) => r.template);
    return this.template;
  }

  /** `candidates` samples: asked for with `n`, topped up by further calls from backends that return fewer. */
  private async sample(instruction: string, ctx: StageContext): Promise<Completion[]> {
    const { sampling, candidates, systemPrompt } = this.config;
    const messages: ChatMessage[] = [...(systemPrompt ? [{ role: 'system' as const, content: systemPrompt }] : []), { role: 'user', content: instruction }];
    const common = { temperature: sampling.temperature, topP: sampling.topP, maxTokens: sampling.maxTokens, repetitionPenalty: sampling.repetitionPenalty, signal: ctx.signal };
    const template = await this.chatTemplate();
    const prompt = template.formatConversation(messages, { addGenerationPrompt: true });
    const out: Completion[] = [];
    for (let calls = 0; out.length < candidates && calls < candidates; calls++) {
      const n = candidates - out.length;
      const got = this.config.mode === 'chat'
        ? await this.backend.chat({ ...common, n, messages })
        : await this.backend.complete({ ...common, n, prompt, stop: [...template.stop], stopTokenIds: [...template.stopTokenIds] });
      out.push(...got.slice(0, n));
      await ctx.heartbeat();
    }
    if (out.length < candidates) throw new InferenceError('INFERENCE_BAD_RESPONSE', `${this.backend.id} returned ${out.length} of ${candidates} candidates after ${candidates} requests`);
    return out;
  }

  async process(batch: InputRecord<PreferenceInput>[], ctx: StageContext): Promise<Outcome<PreferencePair>[]> {
    // Reward calls of the whole batch share one bound; each record samples and scores on its own, so one
    // record's failure leaves its siblings' finished candidates and scores in place.
    const scoring = pLimit(this.rewards.maxInFlight);
    return eachRecord(batch, ({ value }) => this.prefer(value, scoring, ctx));
  }

  private async prefer(value: PreferenceInput, scoring: LimitFunction, ctx: StageContext): Promise<Outcome<PreferencePair>> {
    const instruction = value.instruction.trim();
    if (!instruction) return reject('empty_instruction', 'instruction is empty', value);
    const usable = (c: Completion) => c.text.trim().length > 0 && (this.config.keepTruncated || c.finishReason !== 'length');
    const sampled = (await this.sample(instruction, ctx)).filter(usable);
    const judged = await Promise.all(sampled.map((c) => scoring(() => this.rewards.score({ instruction, response: c.text.trim() }, ctx.signal))));
    const rewards: number[] = [];
    for (const j of judged) {
      if (!j.ok) return dead('REWARD_FAILED', `reward model ${this.rewards.model}: ${j.reason}`);
      rewards.push(j.value);
    }
    const scored: ScoredResponse[] = sampled.map((c, i) => ({ response: c.text.trim(), reward: rewards[i]!, finish_reason: c.finishReason, tokens: c.tokens }));
    if (scored.length < 2) {
      const dropped = this.config.candidates - scored.length;
      return reject('too_few_candidates', `${scored.length} of ${this.config.candidates} candidates usable (${dropped} empty${this.config.keepTruncated ? '' : ' or truncated at maxTokens'}); a pair needs 2`, value);
    }
    const { best, worst } = extremes(scored);
    if (scored[best]!.reward === scored[worst]!.reward) {
      return reject('no_preference', `all ${scored.length} candidates scored ${scored[best]!.reward} by ${this.rewards.model}: no chosen/rejected pair`, value);
    }
    return { kind: 'emit', records: [{ value: this.pair(value, scored, best, worst), key: value.uuid }] };
  }

  private pair(input: PreferenceInput, scored: ScoredResponse[], best: number, worst: number): PreferencePair {
    const { sampling } = this.config;
    return {
      uuid: input.uuid,
      model: this.backend.model,
      gen_input_configs: input.gen_input_configs,
      instruction: input.instruction.trim(),
      chosen: scored[best]!.response,
      rejected: scored[worst]!.response,
      chosen_reward: scored[best]!.reward,
      rejected_reward: scored[worst]!.reward,
      candidates: scored,
      reward_model: this.rewards.model,
      gen_response_configs: { temperature: sampling.temperature, top_p: sampling.topP, max_tokens: sampling.maxTokens, repetition_penalty: sampling.repetitionPenalty, output_generator: this.backend.id },
      task_category: null, other_task_category: [], intent: null, knowledge: null, difficulty: null, input_quality: null,
      quality_explanation: null, llama_guard_2: null, language: null, min_neighbor_distance: null, min_similar_uuid: null, repeat_count: null,
      ...carriedTags(input),
      created_at: Date.now(),
    };
  }
}

export const generatePreferences = defineProcessor({
  type: 'generate-preferences',
  description: 'Magpie preference data (DPO): samples several responses per instruction, scores them with a reward model over HTTP and emits the best as chosen and the worst as rejected.',
  config,
  inputSchema: 'magpie.Instruction',
  outputSchema: 'magpie.PreferencePair',
  schemasFromConfig: (c) => ({ input: c.schema, output: 'magpie.PreferencePair' }),
  uses: (c) => ({ backends: [c.backend], rewards: [c.reward] }),
  create: (c, deps) => new PreferencePairGenerator(deps.backend(c.backend), deps.reward(c.reward), c),
});
