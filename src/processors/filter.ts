import { z } from 'zod';
import type { Conversation } from '../serde/records.generated.js';
import { filterRulesSchema, firstFailedRule } from './filter-rules.js';
import { defineProcessor, emitValue, reject, type Processor } from './stage.js';

const config = z.strictObject({ rules: filterRulesSchema });

/** Magpie's release filter as a stage: records that pass every rule go on, the rest go to rejects naming the first rule they fail. */
export const filter = defineProcessor({
  type: 'filter',
  description: 'Passes records that meet every rule (eq, neq, in, notIn, gt, gte, lt, lte, between, exists, empty over any field); rejects the rest naming the first failed rule.',
  config,
  inputSchema: 'magpie.Conversation',
  outputSchema: 'magpie.Conversation',
  create: (cfg): Processor<Conversation, Conversation> => ({
    process: async (batch) =>
      batch.map((r) => {
        const failed = firstFailedRule(cfg.rules, r.value);
        return failed ? reject(failed.rule, failed.reason, r.value) : emitValue(r.value, r.key);
      }),
  }),
});
