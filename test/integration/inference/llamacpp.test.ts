import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { LlamaCppBackend } from '../../../src/inference/llamacpp.js';
import { deriveTemplate, readModelChatTemplate } from '../../../src/inference/template-derive.js';
import { familyTemplate, templateStrings } from '../../../src/inference/templates.js';
import { smolLmGguf } from './models.js';

const gguf = smolLmGguf();
if (!gguf) {
  console.warn('[llamacpp.test] SKIPPED: no GGUF (MAGPIE_LLM_GGUF unset and the cache has none); run scripts/fetch-models.sh');
}

const logger = createLogger({ level: 'warn' });
const chatml = familyTemplate('chatml');
const smollm2 = familyTemplate('smollm2');
const instructionSampling = { temperature: 1, topP: 1, maxTokens: 192 };

describe.skipIf(!gguf)('LlamaCppBackend with SmolLM2-135M-Instruct', () => {
  let backend: LlamaCppBackend;

  beforeAll(async () => {
    backend = await LlamaCppBackend.load({ name: 'smol', modelPath: gguf!, contextSize: 1024, sequences: 4, gpu: false, logger });
  });

  afterAll(async () => {
    await backend?.close();
  });

  it('detects the SmolLM2 ChatML template from the GGUF', () => {
    expect(backend.template).toBe(smollm2);
    expect(backend.id).toBe('llamacpp:SmolLM2-135M-Instruct.Q4_1');
  });

  it('tokenizes template strings as single special tokens', () => {
    expect(backend.tokenize('<|im_start|>')).toHaveLength(1);
    expect(backend.tokenize('<|im_end|>')).toHaveLength(1);
    const preQuery = backend.tokenize(chatml.preQueryTemplate);
    expect(preQuery).toHaveLength(3);
    expect(preQuery[0]).toBe(backend.tokenize('<|im_start|>')[0]);
  });

  it('derives from the GGUF chat template exactly the registry smollm2 template', async () => {
    const registry = templateStrings(smollm2);
    for (const source of [await backend.modelChatTemplate(), await readModelChatTemplate(gguf!)]) {
      const derived = templateStrings(deriveTemplate(source!));
      expect({ ...derived, name: registry.name, stop: [...derived.stop].sort(), stopTokenIds: [...derived.stopTokenIds].sort() }).toEqual({
        ...registry,
        stop: [...registry.stop].sort(),
        stopTokenIds: [...registry.stopTokenIds].sort(),
      });
    }
  });

  it('bans tokens as the first token only, and reports the seed of each sample', async () => {
    const prompt = smollm2.formatConversation([{ role: 'user', content: 'Write a short markdown note about tea, with a title.' }]);
    const greedy = { prompt, temperature: 0, topP: 1, maxTokens: 16, stop: [...smollm2.stop] };
    const [free] = await backend.complete(greedy);
    const first = backend.tokenize(free!.text)[0]!;
    const [banned] = await backend.complete({ ...greedy, firstTokenBans: [first] });
    expect(backend.tokenize(banned!.text)[0]).not.toBe(first);
    const seeded = await backend.complete({ ...greedy, temperature: 1, n: 3, seed: 40 });
    expect(seeded.map((c) => c.seed)).toEqual([40, 41, 42]);
  });

  it('turns the pre-query into user-like instructions that end at <|im_end|> and leak no template tokens', async () => {
    const out = await backend.complete({ prompt: smollm2.preQueryTemplate, n: 8, seed: 1234, ...instructionSampling, stop: [...smollm2.stop] });
    expect(out).toHaveLength(8);
    const finished = out.filter((c) => c.finishReason === 'stop');
    console.info(`[llamacpp.test] ${finished.length}/8 pre-query samples ended at <|im_end|>:\n${finished.map((c) => `  - ${JSON.stringify(c.text.trim().slice(0, 160))}`).join('\n')}`);
    expect(finished.length).toBeGreaterThanOrEqual(3);
    // Requests, not documents: most finished samples ask for something.
    expect(finished.filter((c) => /\?|\b(can you|could you|please|help|how|what|write|explain|i need|i'm|i am)\b/i.test(c.text)).length).toBeGreaterThanOrEqual(Math.ceil(finished.length / 2));
    for (const c of out) {
      expect(chatml.leaks(c.text)).toEqual([]);
      expect(c.tokens).toBeGreaterThan(0);
      expect(c.tokens).toBeLessThanOrEqual(instructionSampling.maxTokens);
    }
    for (const c of finished) expect(c.text.trim().length).toBeGreaterThan(0);
    for (const c of out.filter((x) => x.finishReason === 'length')) expect(c.tokens).toBe(instructionSampling.maxTokens);
  });

  it('runs the bare ChatML pre-query too (no template leaks; the 135M model mostly rambles without its system turn)', async () => {
    const out = await backend.complete({ prompt: chatml.preQueryTemplate, n: 4, seed: 1234, ...instructionSampling, maxTokens: 64, stop: [...chatml.stop] });
    console.info(`[llamacpp.test] bare <|im_start|>user pre-query: ${out.filter((c) => c.finishReason === 'stop').length}/4 ended at <|im_end|>`);
    for (const c of out) expect(chatml.leaks(c.text)).toEqual([]);
  });

  it('stops at a custom stop string and by token id', async () => {
    const [byString] = await backend.complete({ prompt: chatml.preQueryTemplate, seed: 7, ...instructionSampling, stop: ['\n', ...chatml.stop] });
    expect(byString!.text).not.toContain('\n');
    expect(byString!.finishReason).toBe('stop');
    const newline = backend.tokenize('\n');
    expect(newline).toHaveLength(1);
    const [byId] = await backend.complete({ prompt: chatml.preQueryTemplate, seed: 7, ...instructionSampling, stopTokenIds: newline });
    expect(byId!.text).not.toContain('\n');
    expect(byId!.finishReason).toBe('stop');
  });

  it('is reproducible with a seed and gives n distinct samples', async () => {
    const req = { prompt: chatml.preQueryTemplate, seed: 99, ...instructionSampling, maxTokens: 32, stop: [...chatml.stop] };
    const [a] = await backend.complete(req);
    const [b] = await backend.complete(req);
    expect(a!.text).toBe(b!.text);
    const many = await backend.complete({ ...req, n: 4 });
    expect(new Set(many.map((c) => c.text)).size).toBeGreaterThan(1);
  });

  it('reports truncation at maxTokens as finishReason length with the token count', async () => {
    const [c] = await backend.complete({ prompt: chatml.formatConversation([{ role: 'user', content: 'Write a long story about a dragon.' }]), temperature: 0, topP: 1, maxTokens: 12 });
    expect(c!.finishReason).toBe('length');
    expect(c!.tokens).toBe(12);
  });

  it('answers chat turns with the detected template', async () => {
    const messages = [{ role: 'user' as const, content: 'What is the capital of France?' }];
    const [a] = await backend.chat({ messages, temperature: 0, topP: 1, maxTokens: 64 });
    const [b] = await backend.chat({ messages, temperature: 0, topP: 1, maxTokens: 64 });
    console.info(`[llamacpp.test] chat answer: ${JSON.stringify(a!.text)}`);
    expect(a!.text.trim().length).toBeGreaterThan(0);
    expect(a!.text).toBe(b!.text);
    expect(chatml.leaks(a!.text)).toEqual([]);
  });

  it('constrains output to a JSON schema', async () => {
    const schema = {
      type: 'object',
      properties: { difficulty: { enum: ['easy', 'medium', 'hard'] }, reason: { type: 'string' } },
      required: ['difficulty', 'reason'],
    };
    const [c] = await backend.chat({
      messages: [{ role: 'user', content: 'Rate the difficulty of: "What is 2+2?" Answer in JSON.' }],
      temperature: 0,
      topP: 1,
      maxTokens: 96,
      jsonSchema: schema,
    });
    const parsed = JSON.parse(c!.text) as { difficulty: string; reason: string };
    expect(['easy', 'medium', 'hard']).toContain(parsed.difficulty);
    expect(typeof parsed.reason).toBe('string');
  });

  it('rejects a prompt longer than the context with a non-retryable error', async () => {
    const err = await backend.complete({ prompt: 'word '.repeat(3000), temperature: 0, topP: 1, maxTokens: 8 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InferenceError);
    expect((err as InferenceError).retryable).toBe(false);
    expect((err as InferenceError).message).toMatch(/context/);
  });

  it('stops when the caller aborts', async () => {
    const ac = new AbortController();
    const p = backend.complete({ prompt: chatml.preQueryTemplate, temperature: 1, topP: 1, maxTokens: 2000, n: 6, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stage shutting down')), 200);
    await expect(p).rejects.toThrow('stage shutting down');
    // The sequences are free again afterwards.
    const [c] = await backend.complete({ prompt: chatml.preQueryTemplate, seed: 3, temperature: 1, topP: 1, maxTokens: 8 });
    expect(c!.tokens).toBeGreaterThan(0);
  });

  // Speed is measured in bench/suites/llamacpp.ts; here, what parallel sequences must keep: each request its own answer.
  it('decodes parallel sequences independently: the same seed gives the same text alone or beside others', async () => {
    const request = (seed: number) => ({ prompt: chatml.preQueryTemplate, seed, temperature: 1, topP: 1, maxTokens: 32 });
    const [alone] = await backend.complete(request(500));
    const together = await Promise.all([500, 501, 502, 503].map((seed) => backend.complete(request(seed))));
    expect(together[0]![0]!.text).toBe(alone!.text);
    for (const [c] of together) {
      expect(c!.tokens).toBeGreaterThan(0);
      expect(c!.tokens).toBeLessThanOrEqual(32);
    }
    // Four seeds, four samples: the sequences do not share or overwrite each other's state.
    expect(new Set(together.map(([c]) => c!.text)).size).toBeGreaterThan(1);
  });
});

describe('LlamaCppBackend lifecycle', () => {
  it('reports a missing GGUF as INFERENCE_UNAVAILABLE with what to do', async () => {
    const err = await LlamaCppBackend.load({ name: 'x', modelPath: '/nonexistent/model.gguf', contextSize: 512, sequences: 1, gpu: false, logger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InferenceError);
    expect((err as InferenceError).code).toBe('INFERENCE_UNAVAILABLE');
    expect((err as InferenceError).message).toContain('fetch-models.sh');
  });

  it.skipIf(!gguf)('refuses requests after close and can load again (gpu auto falls back to CPU)', async () => {
    const b = await LlamaCppBackend.load({ name: 'y', modelPath: gguf!, contextSize: 512, sequences: 1, gpu: 'auto', logger });
    const [c] = await b.complete({ prompt: chatml.preQueryTemplate, seed: 1, temperature: 1, topP: 1, maxTokens: 4 });
    expect(c!.tokens).toBeGreaterThan(0);
    await b.close();
    expect(b.health()).toBe('closed');
    const err = await b.complete({ prompt: chatml.preQueryTemplate, temperature: 1, topP: 1, maxTokens: 4 }).catch((e: unknown) => e);
    expect((err as InferenceError).code).toBe('INFERENCE_UNAVAILABLE');
  });
});
