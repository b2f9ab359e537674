import { z } from 'zod';
import { errorMessage, InferenceError, isRetryable } from '../core/errors.js';
import type { InferenceBackend } from '../inference/backend.js';
import type { RewardModel } from '../inference/reward.js';
import type { Conversation } from '../serde/records.generated.js';
import { defineProcessor, type Processor } from './stage.js';
import { recordTag, tagEach, type Judged } from './tagging.js';

const TAG = 'reward_difference';

/** A few-shot-free prompt a base model continues with an answer; the fence closes it. */
const DEFAULT_BASE_PROMPT = '# Query:\n```\n{instruction}\n```\n\n# Answer:\n```\n';

const config = z.object({
  /** The base (non-chat) model, e.g. Meta-Llama-3-8B next to the Instruct model that wrote the responses. */
  backend: z.string().min(1),
  /** Raw completion prompt for the base model; {instruction} is replaced by the instruction. */
  prompt: z.string().includes('{instruction}', { message: 'the prompt needs an {instruction} placeholder' }).default(DEFAULT_BASE_PROMPT),
  stop: z.array(z.string().min(1)).default(['```', '# Query:']),
  sampling: z.strictObject({
    temperature: z.number().min(0).max(5).default(0),
    topP: z.number().gt(0).max(1).default(1),
    maxTokens: z.number().int().min(1).default(1024),
  }).default({ temperature: 0, topP: 1, maxTokens: 1024 }),
  /**
   * Name of the reward endpoint (the topology's rewards) that scores both answers (and the instruct answer,
   * unless it already has this model's score).
   */
  reward: z.string().min(1),
  /** Records worked on at once. */
  maxInFlight: z.number().int().min(1).max(1024).default(16),
});
type Config = z.infer<typeof config>;

export interface RewardDifference {
  base_output: string;
  base_reward: number;
  instruct_reward: number;
  reward_difference: number;
  reward_model: string;
}

/**
 * The Magpie-Air filter signal: how much better the instruct model answered than its base model. Answers each
 * instruction with the base model, scores both answers with one reward model, and keeps the difference.
 */
export class RewardDifferenceScorer {
  constructor(
    private readonly base: InferenceBackend,
    private readonly reward: Pick<RewardModel, 'score' | 'model'>,
    private readonly config: Config,
  ) {}

  async score(record: Conversation, signal: AbortSignal): Promise<Judged<RewardDifference>> {
    const baseOutput = await this.baseAnswer(record.instruction, signal);
    if (!baseOutput.ok) return baseOutput;
    // A score from another reward model is not comparable: the instruct answer is scored again.
    const known = record.reward_model === this.reward.model && record.instruct_reward !== null ? record.instruct_reward : undefined;
    const [instruct, base] = await Promise.all([
      known === undefined ? this.reward.score(record, signal) : Promise.resolve<Judged<number>>({ ok: true, value: known }),
      this.reward.score({ instruction: record.instruction, response: baseOutput.value }, signal),
    ]);
    if (!instruct.ok) return { ok: false, reason: `instruct answer: ${instruct.reason}` };
    if (!base.ok) return { ok: false, reason: `base answer: ${base.reason}` };
    return {
      ok: true,
      value: { base_output: baseOutput.value, base_reward: base.value, instruct_reward: instruct.value, reward_difference: instruct.value - base.value, reward_model: this.reward.model },
    };
  }

  private async baseAnswer(instruction: string, signal: AbortSignal): Promise<Judged<string>> {
    const { sampling } = this.config;
    try {
      const [completion] = await this.base.complete({
        prompt: this.config.prompt.replaceAll('{instruction}', instruction.trim()),
        temperature: sampling.temperature,
        topP: sampling.topP,
        maxTokens: sampling.maxTokens,
        stop: this.config.stop,
        signal,
      });
      if (!completion) throw new InferenceError('INFERENCE_BAD_RESPONSE', `${this.base.id} returned no completion`);
      return { ok: true, value: completion.text.trim() };
    } catch (err) {
      if (isRetryable(err) || signal.aborted || !(err instanceof InferenceError)) throw err;
      return { ok: false, reason: `base model: ${err.code}: ${errorMessage(err)}` };
    }
  }
}

export const rewardDifference = defineProcessor({
  type: 'reward-difference',
  description: 'Magpie-Air reward difference: answers each instruction with a base (non-chat) model and scores both answers with a reward model: sets base_output, base_reward, instruct_reward and reward_difference (instruct minus base).',
  config,
  inputSchema: 'magpie.Conversation',
  outputSchema: 'magpie.Conversation',
  writesFields: () => ['base_output', 'base_reward', 'reward_difference'],
  uses: (cfg) => ({ backends: [cfg.backend], rewards: [cfg.reward] }),
  create: (cfg, deps): Processor<Conversation, Conversation> => {
    const scorer = new RewardDifferenceScorer(deps.backend(cfg.backend), deps.reward(cfg.reward), cfg);
    return {
      process: (batch, ctx) => tagEach(batch, ctx, cfg.maxInFlight, async (record, signal) => recordTag(record, TAG, await scorer.score(record, signal), (v) => v)),
    };
  },
});
