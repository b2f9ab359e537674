import { existsSync } from 'node:fs';
import { defaultGgufPath } from '../../src/inference/factory.js';
import { LlamaCppBackend } from '../../src/inference/llamacpp.js';
import { familyTemplate } from '../../src/inference/templates.js';
import { measurement, median, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const PARALLEL = [2, 4];
const MAX_TOKENS = 96;

/**
 * Generated tokens/s of the embedded SmolLM2-135M GGUF on CPU with several sequences decoding at once, against
 * one sequence at a time measured in the same run: what the `sequences` setting of a llamacpp backend buys.
 */
export const llamacppSuite: Suite = {
  name: 'llamacpp',
  description: 'SmolLM2-135M tokens/s with 2 and 4 parallel sequences vs 1 sequence (node-llama-cpp, CPU)',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const modelPath = defaultGgufPath();
    if (!existsSync(modelPath)) throw new Error(`no GGUF at ${modelPath}: run \`npm run fetch-models\` (scripts/fetch-models.sh) first`);
    const backend = await LlamaCppBackend.load({ name: 'bench', modelPath, contextSize: 2048, sequences: Math.max(...PARALLEL), gpu: false, logger: ctx.logger });
    const preQuery = familyTemplate('chatml').preQueryTemplate;
    let seed = 0;
    /** Tokens/s of `parallel` instruction generations at once, the median of a few rounds. */
    const tokensPerSecond = async (parallel: number): Promise<number> => {
      const rounds: number[] = [];
      for (let round = 0; round < (ctx.quick ? 2 : 5); round++) {
        const t0 = performance.now();
        const out = await Promise.all(
          Array.from({ length: parallel }, () => backend.complete({ prompt: preQuery, seed: seed++, temperature: 1, topP: 1, maxTokens: MAX_TOKENS })),
        );
        const tokens = out.flat().reduce((sum, c) => sum + c.tokens, 0);
        rounds.push(tokens / ((performance.now() - t0) / 1000));
      }
      return median(rounds);
    };
    try {
      const out: Measurement[] = [];
      for (const parallel of PARALLEL) {
        ctx.progress(`llamacpp: ${parallel} sequences vs 1`);
        const one = await tokensPerSecond(1);
        const many = await tokensPerSecond(parallel);
        out.push(measurement('llamacpp', `${parallel} parallel sequences`, many, 'tokens/s', { name: '1 sequence', value: one }, { maxTokens: MAX_TOKENS, model: 'SmolLM2-135M-Instruct Q4_1' }));
      }
      return out;
    } finally {
      await backend.close();
    }
  },
};
