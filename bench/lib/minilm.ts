import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createEmbedder, magpieCacheDir } from '../../src/embedding/transformers.js';

export const MINILM_MODEL = 'sentence-transformers/all-MiniLM-L6-v2';

/** The all-MiniLM-L6-v2 folder scripts/fetch-models.sh fills ($MAGPIE_EMBED_MODEL_DIR overrides); throws when it is empty. */
export function miniLmFolder(): string {
  const folder = resolve(process.env.MAGPIE_EMBED_MODEL_DIR ?? join(magpieCacheDir(), 'models', 'all-MiniLM-L6-v2'));
  if (!existsSync(join(folder, 'onnx', 'model_quantized.onnx'))) throw new Error(`no model at ${folder}: run \`npm run fetch-models\` (scripts/fetch-models.sh) first`);
  return folder;
}

/** MiniLM (int8) embeddings of `texts`, as the embed stage makes them, unit length. */
export async function embedWithMiniLm(texts: string[]): Promise<Float32Array[]> {
  const embedder = await createEmbedder({ model: MINILM_MODEL, localPath: miniLmFolder(), dtype: 'q8', pooling: 'mean', batchSize: 32 });
  try {
    return await embedder.embed(texts);
  } finally {
    await embedder.close();
  }
}
