import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The SmolLM2 GGUF that scripts/fetch-models.sh lays out, or MAGPIE_LLM_GGUF; undefined when neither exists. */
export function smolLmGguf(): string | undefined {
  const fromEnv = process.env.MAGPIE_LLM_GGUF?.trim();
  if (fromEnv) return fromEnv;
  const cache = process.env.MAGPIE_CACHE?.trim() || join(homedir(), '.cache', 'magpie-stream');
  const path = join(cache, 'models', 'smollm2-135m-instruct', 'SmolLM2-135M-Instruct.Q4_1.gguf');
  return existsSync(path) ? path : undefined;
}
