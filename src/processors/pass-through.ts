import { z } from 'zod';
import { SCHEMA_NAMES } from '../serde/schemas.js';
import { defineProcessor, emitValue } from './stage.js';

/** Copies records unchanged: mirrors a topic, and is the baseline of the runner's benchmarks. */
export const passThrough = defineProcessor({
  type: 'pass-through',
  description: 'Copies every record of the input topic to the output topic unchanged.',
  config: z.object({ schema: z.enum(SCHEMA_NAMES).default('magpie.Instruction') }),
  inputSchema: 'magpie.Instruction',
  outputSchema: 'magpie.Instruction',
  schemasFromConfig: (config) => ({ input: config.schema, output: config.schema }),
  create: () => ({
    process: async (batch) => batch.map((r) => emitValue(r.value, r.key)),
  }),
});
