import { z } from 'zod';
import type { Conversation } from '../serde/records.generated.js';
import { defineProcessor, type Processor } from './stage.js';
import { recordTag, tagEach } from './tagging.js';

const TAG = 'instruct_reward';

/** Reward-model score of (instruction, response): sets instruct_reward and reward_model. */
export const tagReward = defineProcessor({
  type: 'tag-reward',
  description: 'Scores the (instruction, response) pair with a reward model of the topology\'s rewards (vLLM /classify or /pooling, or a {score} JSON endpoint): sets instruct_reward and reward_model.',
  config: z.object({
    /** Name of a reward endpoint declared under the topology's rewards. */
    reward: z.string().min(1),
  }),
  uses: (cfg) => ({ rewards: [cfg.reward] }),
  inputSchema: 'magpie.Conversation',
  outputSchema: 'magpie.Conversation',
  writesFields: () => ['instruct_reward', 'reward_model'],
  create: (cfg, deps): Processor<Conversation, Conversation> => {
    const rewards = deps.reward(cfg.reward);
    return {
      process: (batch, ctx) =>
        tagEach(batch, ctx, rewards.maxInFlight, async (record, signal) =>
          recordTag(record, TAG, await rewards.score(record, signal), (score) => ({ instruct_reward: score, reward_model: rewards.model })),
        ),
    };
  },
});
