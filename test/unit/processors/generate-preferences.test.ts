import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { InferenceError } from '../../../src/core/errors.js';
import type { ChatRequest, Completion, CompletionRequest, InferenceBackend } from '../../../src/inference/backend.js';
import { generatePreferences, PreferencePairGenerator } from '../../../src/processors/generate-preferences.js';
import type { Judged } from '../../../src/processors/tagging.js';
import type { RewardInput } from '../../../src/processors/tag-reward.js';
import type { Outcome, Processor } from '../../../src/processors/stage.js';
import { getType } from '../../../src/serde/avro.js';
import type { Conversation, Instruction, PreferencePair } from '../../../src/serde/records.generated.js';
import { makeConversation, makeInstruction } from '../../support/records.js';
import { deps, inputs, mainValues, stageContext } from './harness.js';

/** Answers every request with the next texts of `answers` (a text ending in '…' finishes with 'length'); `perCall` caps n. */
class SamplingBackend implements InferenceBackend {
  readonly id = 'fake:sampler';
  readonly model = 'fake-model';
  readonly requests: (CompletionRequest | ChatRequest)[] = [];
  private next = 0;

  constructor(
    private readonly answers: string[],
    private readonly perCall = Infinity,
  ) {}

  private take(req: CompletionRequest | ChatRequest): Completion[] {
    this.requests.push(req);
    return Array.from({ length: Math.min(req.n ?? 1, this.perCall) }, () => {
      const text = this.answers[this.next++ % this.answers.length]!;
      return { text, finishReason: text.endsWith('…') ? 'length' : 'stop', tokens: text.length };
    });
  }

  async complete(req: CompletionRequest): Promise<Completion[]> {
    return this.take(req);
  }

  async chat(req: ChatRequest): Promise<Completion[]> {
    return this.take(req);
  }

  async close(): Promise<void> {}
}

/** Scores by response length, or as `override` says for a response; records what it was asked. */
class LengthScorer {
  readonly asked: RewardInput[] = [];
  constructor(private readonly override: (input: RewardInput) => Judged<number> | Error | undefined = () => undefined) {}

  async score(input: RewardInput): Promise<Judged<number>> {
    this.asked.push(input);
    const o = this.override(input);
    if (o instanceof Error) throw o;
    return o ?? { ok: true, value: input.response.length };
  }

  async close(): Promise<void> {}
}

const baseConfig = {
  backend: 'llm',
  template: 'chatml',
  candidates: 3,
  reward: { url: 'http://127.0.0.1:1/score', api: 'score-json', model: 'length-rm' },
};

function generator(backend: InferenceBackend, scorer: LengthScorer, config: Record<string, unknown> = {}): PreferencePairGenerator {
  return new PreferencePairGenerator(backend, scorer, generatePreferences.config.parse({ ...baseConfig, ...config }));
}

function run(processor: Processor<Instruction | Conversation, PreferencePair>, values: (Instruction | Conversation)[]): Promise<Outcome<PreferencePair>[]> {
  return processor.process(inputs(values), stageContext());
}

let server: Server | undefined;

afterEach(async () => {
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

describe('generate-preferences', () => {
  it('samples K answers in one request through the chat template and pairs the highest reward with the lowest', async () => {
    const backend = new SamplingBackend(['Medium answer.', 'The longest answer of all.', 'Short.']);
    const scorer = new LengthScorer();
    const [pair] = mainValues<PreferencePair>(await run(generator(backend, scorer), [makeInstruction(1, '  Why is the sky blue? ')]));
    expect(backend.requests).toHaveLength(1);
    expect(backend.requests[0]).toMatchObject({
      n: 3, temperature: 0.8, topP: 1, maxTokens: 1024,
      prompt: '<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n',
      stop: ['<|im_start|>', '<|im_end|>', '<|endoftext|>'],
    });
    expect(scorer.asked).toEqual(['Medium answer.', 'The longest answer of all.', 'Short.'].map((response) => ({ instruction: 'Why is the sky blue?', response })));
    expect(pair).toMatchObject({
      uuid: makeInstruction(1).uuid,
      model: 'fake-model',
      instruction: 'Why is the sky blue?',
      chosen: 'The longest answer of all.',
      rejected: 'Short.',
      chosen_reward: 26,
      rejected_reward: 6,
      reward_model: 'length-rm',
      gen_response_configs: { temperature: 0.8, top_p: 1, max_tokens: 1024, repetition_penalty: 1, output_generator: 'fake:sampler' },
      task_category: null,
      other_task_category: [],
    });
    expect(pair!.candidates).toEqual([
      { response: 'Medium answer.', reward: 14, finish_reason: 'stop', tokens: 14 },
      { response: 'The longest answer of all.', reward: 26, finish_reason: 'stop', tokens: 26 },
      { response: 'Short.', reward: 6, finish_reason: 'stop', tokens: 6 },
    ]);
    expect(getType('magpie.PreferencePair').isValid(pair)).toBe(true);
  });

  it('carries the tags of a tagged conversation into the pair', async () => {
    const tagged: Conversation = { ...makeConversation(2, 'Plan a trip.'), task_category: 'Planning', difficulty: 'easy', input_quality: 'good', language: 'en', min_neighbor_distance: 0.25, repeat_count: 0, other_task_category: ['Advice seeking'] };
    const [pair] = mainValues<PreferencePair>(await run(generator(new SamplingBackend(['a', 'bb', 'ccc']), new LengthScorer(), { schema: 'magpie.Conversation' }), [tagged]));
    expect(pair).toMatchObject({ task_category: 'Planning', difficulty: 'easy', input_quality: 'good', language: 'en', min_neighbor_distance: 0.25, repeat_count: 0, other_task_category: ['Advice seeking'], chosen: 'ccc', rejected: 'a' });
    expect(generatePreferences.schemasFromConfig!(generatePreferences.config.parse({ ...baseConfig, schema: 'magpie.Conversation' }))).toEqual({ input: 'magpie.Conversation', output: 'magpie.PreferencePair' });
  });

  it('tops up with further requests when the backend returns fewer samples than n', async () => {
    const backend = new SamplingBackend(['x', 'yy', 'zzz', 'wwww'], 1);
    const [pair] = mainValues<PreferencePair>(await run(generator(backend, new LengthScorer(), { candidates: 4, mode: 'chat' }), [makeInstruction(3)]));
    expect(backend.requests.map((r) => r.n)).toEqual([4, 3, 2, 1]);
    expect((backend.requests[0] as ChatRequest).messages).toEqual([{ role: 'user', content: makeInstruction(3).instruction }]);
    expect(pair!.candidates.map((c) => c.response)).toEqual(['x', 'yy', 'zzz', 'wwww']);
  });

  it('takes the first of tied best and worst candidates, in sampling order', async () => {
    const [pair] = mainValues<PreferencePair>(await run(generator(new SamplingBackend(['aa', 'b', 'cc', 'd']), new LengthScorer(), { candidates: 4 }), [makeInstruction(4)]));
    expect(pair).toMatchObject({ chosen: 'aa', rejected: 'b' });
  });

  it('rejects with no_preference when every candidate scores the same', async () => {
    const outcomes = await run(generator(new SamplingBackend(['one', 'two', 'six']), new LengthScorer()), [makeInstruction(5)]);
    expect(outcomes).toEqual([{ kind: 'reject', rule: 'no_preference', reason: 'all 3 candidates scored 3 by length-rm: no chosen/rejected pair', record: makeInstruction(5) }]);
  });

  it('drops empty and truncated candidates before scoring unless truncated ones are kept', async () => {
    const answers = ['Cut mid-sent…', '   ', 'Fine.'];
    const scorer = new LengthScorer();
    const [dropped] = await run(generator(new SamplingBackend(answers), scorer), [makeInstruction(6)]);
    expect(dropped).toMatchObject({ kind: 'reject', rule: 'too_few_candidates', reason: '1 of 3 candidates usable (2 empty or truncated at maxTokens); a pair needs 2' });
    expect(scorer.asked.map((a) => a.response)).toEqual(['Fine.']);
    const [kept] = mainValues<PreferencePair>(await run(generator(new SamplingBackend(answers), new LengthScorer(), { keepTruncated: true }), [makeInstruction(6)]));
    expect(kept).toMatchObject({ chosen: 'Cut mid-sent…', rejected: 'Fine.' });
    expect(kept!.candidates.map((c) => c.finish_reason)).toEqual(['length', 'stop']);
  });

  it('rejects an empty instruction without asking the model', async () => {
    const backend = new SamplingBackend(['a']);
    const outcomes = await run(generator(backend, new LengthScorer()), [makeInstruction(7, '  '), makeInstruction(8, 'Hi?')]);
    expect(outcomes[0]).toMatchObject({ kind: 'reject', rule: 'empty_instruction' });
    expect(outcomes[1]).toMatchObject({ kind: 'reject', rule: 'no_preference' });
    expect(backend.requests).toHaveLength(1);
  });

  it('dead-letters a record whose reward the endpoint cannot give, while the rest of the batch pairs', async () => {
    const scorer = new LengthScorer((i) => (i.instruction === 'Bad?' ? { ok: false, reason: 'INFERENCE_BAD_RESPONSE: reward model answered with non-JSON: <html>' } : undefined));
    const outcomes = await run(generator(new SamplingBackend(['a', 'bb', 'ccc']), scorer), [makeInstruction(9, 'Bad?'), makeInstruction(10, 'Good?')]);
    expect(outcomes[0]).toEqual({ kind: 'dead', code: 'REWARD_FAILED', reason: 'reward model length-rm: INFERENCE_BAD_RESPONSE: reward model answered with non-JSON: <html>' });
    expect(outcomes[1]).toMatchObject({ kind: 'emit', records: [{ value: { chosen: 'ccc', rejected: 'a' }, key: makeInstruction(10).uuid }] });
  });

  it('fails the record with a retryable reward error so the runner retries it alone', async () => {
    const down = new InferenceError('INFERENCE_CONNECTION', 'cannot reach the reward model', { retryable: true });
    expect(await run(generator(new SamplingBackend(['a', 'bb', 'ccc']), new LengthScorer(() => down)), [makeInstruction(11)])).toEqual([{ kind: 'failed', error: down }]);
  });

  it('scores through the configured HTTP reward endpoint, with the defaults of the Magpie recipe', async () => {
    const seen: unknown[] = [];
    server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as { response: string };
        seen.push(body);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ score: -body.response.length }));
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/score`;
    const config = generatePreferences.config.parse({ backend: 'llm', template: 'chatml', reward: { url, api: 'score-json', model: 'neg-length' } });
    expect(config).toMatchObject({ candidates: 5, sampling: { temperature: 0.8 }, keepTruncated: false, schema: 'magpie.Instruction' });
    const backend = new SamplingBackend(['a', 'bbbb', 'bb', 'bbbbb', 'bbb']);
    const processor = generatePreferences.create(config, deps({ backend }));
    try {
      const [pair] = mainValues<PreferencePair>(await run(processor, [makeInstruction(12, 'Q?')]));
      expect(pair).toMatchObject({ chosen: 'a', rejected: 'bbbbb', chosen_reward: -1, rejected_reward: -5, reward_model: 'neg-length' });
      expect(seen).toContainEqual({ model: 'neg-length', instruction: 'Q?', response: 'bbbb' });
    } finally {
      await processor.close?.();
    }
  });
});
