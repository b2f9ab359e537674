import { z } from 'zod';
import { sleep } from '../core/retry.js';
import { SCHEMA_NAMES } from '../serde/schemas.js';
import { defineProcessor, emitValue } from './stage.js';

/** Copies records unchanged: mirrors a topic, and is the baseline of the runner's benchmarks. */
export const passThrough = defineProcessor({
  type: 'pass-through',
  description: 'Copies every record of the input topic to the output topic unchanged.',
  config: z.object({
    schema: z.enum(SCHEMA_NAMES).default('magpie.Instruction'),
    /** Pause per batch, standing in for slow work (fault-injection tests need batches in flight). */
    delayMs: z.number().int().min(0).default(0),
  }),
  inputSchema: 'magpie.Instruction',
  outputSchema: 'magpie.Instruction',
  schemasFromConfig: (config) => ({ input: config.schema, output: config.schema }),
  create: (config) => ({
    process: async (batch, ctx) => {
      if (config.delayMs > 0) await sleep(config.delayMs, ctx.signal);
      return batch.map((r) => emitValue(r.value, r.key));
    },
  }),
});
