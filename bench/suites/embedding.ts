import { basename, dirname, join } from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import * as ort from 'onnxruntime-node';
import { createEmbedder } from '../../src/embedding/transformers.js';
import { compare, measurement, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';
import { miniLmFolder } from '../lib/minilm.js';
import { sentence } from '../lib/records.js';

const MODEL = 'sentence-transformers/all-MiniLM-L6-v2';
const BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64];
const TEXTS_PER_CALL = 64;

interface TensorLike {
  data: BigInt64Array | ArrayLike<number | bigint>;
  dims: number[];
}

/**
 * The baseline: the same ONNX file straight through onnxruntime-node, tokenised by the same tokenizer,
 * mean-pooled over the attention mask and L2-normalised by hand.
 */
class DirectOnnxEmbedder {
  private constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly session: ort.InferenceSession,
  ) {}

  static async load(folder: string): Promise<DirectOnnxEmbedder> {
    env.localModelPath = dirname(folder) + '/';
    env.allowLocalModels = true;
    env.allowRemoteModels = false;
    const tokenizer = await AutoTokenizer.from_pretrained(basename(folder), { local_files_only: true });
    const session = await ort.InferenceSession.create(join(folder, 'onnx', 'model_quantized.onnx'));
    return new DirectOnnxEmbedder(tokenizer, session);
  }

  async embed(texts: string[], batchSize: number): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (let start = 0; start < texts.length; start += batchSize) {
      const enc = this.tokenizer(texts.slice(start, start + batchSize), { padding: true, truncation: true }) as unknown as Record<string, TensorLike>;
      const feeds: Record<string, ort.Tensor> = {};
      for (const name of this.session.inputNames) {
        const t = enc[name]!;
        feeds[name] = new ort.Tensor('int64', t.data as BigInt64Array, t.dims);
      }
      const result = await this.session.run(feeds);
      const hidden = result[this.session.outputNames[0]!]!;
      const [rows, tokens, dims] = hidden.dims as [number, number, number];
      const data = hidden.data as Float32Array;
      const mask = enc['attention_mask']!.data as BigInt64Array;
      for (let r = 0; r < rows; r++) {
        const v = new Float32Array(dims);
        let count = 0;
        for (let t = 0; t < tokens; t++) {
          if (mask[r * tokens + t] === 0n) continue;
          count++;
          const o = (r * tokens + t) * dims;
          for (let d = 0; d < dims; d++) v[d] = v[d]! + data[o + d]!;
        }
        let norm = 0;
        for (let d = 0; d < dims; d++) {
          v[d] = v[d]! / count;
          norm += v[d]! * v[d]!;
        }
        const inv = 1 / Math.sqrt(norm);
        for (let d = 0; d < dims; d++) v[d] = v[d]! * inv;
        out.push(v);
      }
      for (const t of Object.values(result)) t.dispose?.();
    }
    return out;
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

export const embeddingSuite: Suite = {
  name: 'embedding',
  description: 'all-MiniLM-L6-v2 (int8) sentences/s on CPU at batch sizes 1..64: the project embedder vs onnxruntime-node directly',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const folder = miniLmFolder();
    const texts = Array.from({ length: TEXTS_PER_CALL }, (_, i) => sentence(i));
    const direct = await DirectOnnxEmbedder.load(folder);
    const out: Measurement[] = [];
    const sizes = ctx.quick ? [1, 8, 64] : BATCH_SIZES;
    try {
      for (const batchSize of sizes) {
        const embedder = await createEmbedder({ model: MODEL, localPath: folder, dtype: 'q8', pooling: 'mean', batchSize });
        try {
          // Same work: the vectors must agree (int8 activations are quantised per run, so batches differ slightly).
          const a = await embedder.embed(texts);
          const b = await direct.embed(texts, batchSize);
          let worst = 0;
          a.forEach((v, i) => {
            let dot = 0;
            for (let d = 0; d < v.length; d++) dot += v[d]! * b[i]![d]!;
            worst = Math.max(worst, 1 - dot);
          });
          if (worst > 0.01) throw new Error(`batch ${batchSize}: embedder and direct onnxruntime disagree (cosine distance ${worst.toFixed(4)}): not the same work`);
          const r = await compare(() => embedder.embed(texts), () => direct.embed(texts, batchSize), TEXTS_PER_CALL, { rounds: ctx.quick ? 1 : 3, roundMs: ctx.quick ? 800 : 2_500 });
          ctx.progress(`embedding batch ${batchSize}: ${r.candidate.toFixed(1)} sentences/s vs direct ${r.baseline.toFixed(1)}/s`);
          out.push(measurement('embedding', `embedder, batch ${batchSize}`, r.candidate, 'sentences/s', { name: 'onnxruntime-node direct', value: r.baseline }, { batchSize, maxCosineDistanceToBaseline: Number(worst.toExponential(2)), meanChars: Math.round(texts.reduce((s, t) => s + t.length, 0) / texts.length) }));
        } finally {
          await embedder.close();
        }
      }
    } finally {
      await direct.close();
    }
    return out;
  },
};
