import type { AnyStageDefinition } from './stage.js';
import { passThrough } from './pass-through.js';
import { generateInstructions } from './generate-instructions.js';
import { generateResponses } from './generate-responses.js';
import { embed } from './embed.js';
import { nearDuplicate } from './near-duplicate.js';
import { filter } from './filter.js';
import { tagLanguage } from './tag-language.js';
import { tagLlmJudge } from './tag-llm-judge.js';
import { tagSafety } from './tag-safety.js';
import { tagReward } from './tag-reward.js';
import { rewardDifference } from './reward-difference.js';
import { generatePreferences } from './generate-preferences.js';

/** Every stage type a topology can name. One line per stage file. */
export const STAGE_DEFINITIONS: readonly AnyStageDefinition[] = [
  passThrough,
  generateInstructions,
  generateResponses,
  embed,
  nearDuplicate,
  filter,
  tagLanguage,
  tagLlmJudge,
  tagSafety,
  tagReward,
  rewardDifference,
  generatePreferences,
];
