import { z } from 'zod';
import type { Conversation } from '../serde/records.generated.js';
import { defineProcessor, emitValue, type Processor } from './stage.js';

const config = z
  .object({
    /** Name of an embedder declared in the topology. */
    embedder: z.string().min(1).default('default'),
  })
  .strict();

/** Embeds each record's instruction for the near-duplicate stage: sets `embedding` and `embedding_model`. */
export const embed = defineProcessor({
  type: 'embed',
  description: 'Embeds the instruction with a sentence-embedding model (unit-length vectors): sets embedding and embedding_model.',
  config,
  inputSchema: 'magpie.Conversation',
  outputSchema: 'magpie.Conversation',
  uses: (cfg) => ({ embedders: [cfg.embedder] }),
  create: (cfg, deps): Processor<Conversation, Conversation> => {
    const embedder = deps.embedder(cfg.embedder);
    return {
      async process(batch) {
        const vectors = await embedder.embed(batch.map((r) => r.value.instruction));
        return batch.map((r, i) => emitValue<Conversation>({ ...r.value, embedding: Array.from(vectors[i]!), embedding_model: embedder.model }, r.key));
      },
    };
  },
});
