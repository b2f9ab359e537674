import type { AnyStageDefinition } from './stage.js';
import { passThrough } from './pass-through.js';
import { generateInstructions } from './generate-instructions.js';
import { generateResponses } from './generate-responses.js';

/** Every stage type a topology can name. One line per stage file. */
export const STAGE_DEFINITIONS: readonly AnyStageDefinition[] = [
  passThrough,
  generateInstructions,
  generateResponses,
];

export function findStageDefinition(type: string): AnyStageDefinition | undefined {
  return STAGE_DEFINITIONS.find((d) => d.type === type);
}
