import { describe, expect, it } from 'vitest';
import { InferenceError } from '../../../src/core/errors.js';
import type { Completion, CompletionRequest, InferenceBackend } from '../../../src/inference/backend.js';
import { RewardDifferenceScorer, rewardDifference } from '../../../src/processors/reward-difference.js';
import type { RewardInput } from '../../../src/inference/reward.js';
import type { Judged } from '../../../src/processors/tagging.js';
import { makeConversation } from '../../support/records.js';

class BaseModel implements InferenceBackend {
  readonly id = 'fake:base';
  readonly model = 'base';
  readonly prompts: CompletionRequest[] = [];
  constructor(private readonly answer: (prompt: string) => string | Error) {}
  async complete(req: CompletionRequest): Promise<Completion[]> {
    this.prompts.push(req);
    const a = this.answer(req.prompt);
    if (a instanceof Error) throw a;
    return [{ text: a, finishReason: 'stop', tokens: 3 }];
  }
  async chat(): Promise<Completion[]> {
    throw new Error('not used');
  }
  async close(): Promise<void> {}
}

/** Scores by answer length, so the two answers get different rewards; records what it scored. */
class LengthReward {
  readonly model = 'rm';
  readonly scored: RewardInput[] = [];
  async score(input: RewardInput): Promise<Judged<number>> {
    this.scored.push(input);
    return { ok: true, value: input.response.length / 10 };
  }
}

const cfg = (extra: Record<string, unknown> = {}) => rewardDifference.config.parse({ backend: 'base', reward: 'rm', ...extra });
const signal = new AbortController().signal;

describe('RewardDifferenceScorer (Magpie-Air filter signal)', () => {
  it('answers with the base model from a raw prompt, scores both answers and keeps instruct minus base', async () => {
    const base = new BaseModel(() => ' Short. ');
    const reward = new LengthReward();
    const record = makeConversation(1, 'Explain tides.', 'The moon pulls the oceans.');
    const judged = await new RewardDifferenceScorer(base, reward, cfg()).score(record, signal);
    expect(base.prompts[0]).toMatchObject({ prompt: '# Query:\n```\nExplain tides.\n```\n\n# Answer:\n```\n', temperature: 0, stop: ['```', '# Query:'] });
    expect(judged).toEqual({ ok: true, value: { base_output: 'Short.', base_reward: 0.6, instruct_reward: 2.6, reward_difference: 2.6 - 0.6, reward_model: 'rm' } });
    expect(reward.scored.map((s) => s.response)).toEqual(['The moon pulls the oceans.', 'Short.']);
  });

  it('reuses an instruct reward from the same reward model and rescores one from another', async () => {
    const reward = new LengthReward();
    const scorer = new RewardDifferenceScorer(new BaseModel(() => 'abc'), reward, cfg());
    const same = await scorer.score({ ...makeConversation(1), instruct_reward: 5, reward_model: 'rm' }, signal);
    expect(same).toMatchObject({ ok: true, value: { instruct_reward: 5, reward_difference: 5 - 0.3 } });
    expect(reward.scored).toHaveLength(1);
    await scorer.score({ ...makeConversation(2), instruct_reward: 5, reward_model: 'other-rm' }, signal);
    expect(reward.scored).toHaveLength(3);
  });

  it('notes a failing base model as the reason, and throws a retryable fault for the runner', async () => {
    const failing = new RewardDifferenceScorer(new BaseModel(() => new InferenceError('INFERENCE_HTTP', 'HTTP 400: prompt too long')), new LengthReward(), cfg());
    expect(await failing.score(makeConversation(1), signal)).toEqual({ ok: false, reason: 'base model: INFERENCE_HTTP: HTTP 400: prompt too long' });
    const down = new RewardDifferenceScorer(new BaseModel(() => new InferenceError('INFERENCE_CONNECTION', 'refused', { retryable: true })), new LengthReward(), cfg());
    await expect(down.score(makeConversation(1), signal)).rejects.toThrow('refused');
  });

  it('needs an {instruction} placeholder in a custom prompt', () => {
    expect(rewardDifference.config.safeParse({ ...cfg(), prompt: 'Answer:' }).success).toBe(false);
  });
});
