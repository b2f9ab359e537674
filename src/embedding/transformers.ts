import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { FeatureExtractionPipeline } from '@huggingface/transformers';
import { z } from 'zod';
import { ConfigError, errorMessage } from '../core/errors.js';
import type { Embedder } from './embedder.js';

export const embedderConfigSchema = z
  .object({
    /** Hugging Face model id; recorded as `embedding_model` on every record. */
    model: z.string().min(1),
    /** A folder laid out as a model repo (config.json, tokenizer.json, onnx/…): loads offline from it. */
    localPath: z.string().min(1).optional(),
    /** Which ONNX file: fp32 → onnx/model.onnx, q8 → onnx/model_quantized.onnx, … */
    dtype: z.enum(['fp32', 'fp16', 'q8', 'int8', 'uint8', 'q4', 'bnb4', 'q4f16']).default('fp32'),
    /** mean for sentence-transformers models such as all-MiniLM-L6-v2 / all-mpnet-base-v2; cls for bge. */
    pooling: z.enum(['mean', 'cls']).default('mean'),
    /**
     * Texts per ONNX run. 1 makes every vector independent of its batch neighbours: int8 models quantise
     * activations per run, which moves a text's vector by up to ~0.005 cosine distance with other company.
     */
    batchSize: z.number().int().min(1).max(1024).default(1),
    /** Tokens kept per text; defaults to the tokenizer's model_max_length. */
    maxLength: z.number().int().min(8).max(8192).optional(),
  })
  .strict();
export type EmbedderConfig = z.infer<typeof embedderConfigSchema>;

/** `${MAGPIE_CACHE:-~/.cache/magpie-stream}`: downloads and fetched models live under it, never in the repo. */
export function magpieCacheDir(): string {
  return resolve(process.env.MAGPIE_CACHE?.trim() || join(homedir(), '.cache', 'magpie-stream'));
}

// transformers.js resolves model files through the global `env`: loads run one at a time so two embedders
// with different folders cannot see each other's settings.
let loading: Promise<unknown> = Promise.resolve();

async function loadExtractor(config: EmbedderConfig): Promise<FeatureExtractionPipeline> {
  // Loaded here, not at start-up: transformers.js and ONNX Runtime cost every command that never embeds.
  const { env, pipeline } = await import('@huggingface/transformers');
  env.cacheDir = join(magpieCacheDir(), 'transformers');
  env.allowRemoteModels = config.localPath === undefined;
  let modelRef = config.model;
  if (config.localPath) {
    const folder = resolve(config.localPath);
    env.localModelPath = dirname(folder) + '/';
    env.allowLocalModels = true;
    modelRef = basename(folder);
  }
  try {
    return await pipeline('feature-extraction', modelRef, { dtype: config.dtype, local_files_only: config.localPath !== undefined });
  } catch (err) {
    const where = config.localPath ? `folder ${config.localPath}` : `model id ${config.model} (cache ${env.cacheDir})`;
    throw new ConfigError(`cannot load the embedding model from ${where}: ${errorMessage(err)}. Run scripts/fetch-models.sh or fix embedder.localPath/dtype.`, { model: config.model, localPath: config.localPath, dtype: config.dtype });
  }
}

class TransformersEmbedder implements Embedder {
  // One ONNX run at a time: the session is not re-entrant, and runs would only compete for the same cores.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly extractor: FeatureExtractionPipeline,
    private readonly config: EmbedderConfig,
    readonly model: string,
    readonly dimensions: number,
  ) {}

  embed(texts: string[]): Promise<Float32Array[]> {
    const run = this.queue.then(() => this.embedNow(texts));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async embedNow(texts: string[]): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (let start = 0; start < texts.length; start += this.config.batchSize) {
      const tensor = await this.extractor(texts.slice(start, start + this.config.batchSize), { pooling: this.config.pooling, normalize: true });
      const [rows, dims] = tensor.dims as [number, number];
      const data = tensor.data as Float32Array;
      for (let r = 0; r < rows; r++) out.push(data.slice(r * dims, (r + 1) * dims));
      tensor.dispose();
    }
    return out;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.extractor.dispose();
  }
}

/** Loads a sentence-embedding model with @huggingface/transformers (onnxruntime-node on CPU). */
export async function createEmbedder(config: EmbedderConfig): Promise<Embedder> {
  const load = loading.then(() => loadExtractor(config));
  loading = load.catch(() => undefined);
  const extractor = await load;
  // The feature-extraction pipeline truncates at model_max_length and ignores tokenizer.json's own
  // truncation/padding block (all-MiniLM-L6-v2's says 128): the limit is set here, explicitly.
  const maxLength = config.maxLength ?? extractor.tokenizer.model_max_length;
  if (!Number.isFinite(maxLength)) {
    await extractor.dispose();
    throw new ConfigError(`the tokenizer of ${config.model} declares no model_max_length: set embedder.maxLength`, { model: config.model });
  }
  extractor.tokenizer.model_max_length = maxLength;
  const probe = await extractor(['dimension probe'], { pooling: config.pooling, normalize: true });
  const dimensions = probe.dims[1]!;
  probe.dispose();
  return new TransformersEmbedder(extractor, config, config.model, dimensions);
}
