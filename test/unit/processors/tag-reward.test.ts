import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { tagReward } from '../../../src/processors/tag-reward.js';
import type { Processor } from '../../../src/processors/stage.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { makeConversation } from '../../support/records.js';
import { deps, inputs, mainValues, stageContext } from './harness.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

type Handler = (seen: Seen, call: number, res: ServerResponse) => void;

let server: Server | undefined;
let processor: Processor<Conversation, Conversation> | undefined;

async function rewardServer(handler: Handler): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const s = { method: req.method!, url: req.url!, headers: req.headers, body: JSON.parse(raw) as Record<string, unknown> };
      seen.push(s);
      handler(s, seen.length - 1, res);
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`, seen };
}

const json = (res: ServerResponse, body: unknown, status = 200) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function score(config: Record<string, unknown>, records = [makeConversation(1, 'What is 2+2?', '4')]): Promise<Conversation[]> {
  processor = tagReward.create(tagReward.config.parse({ model: 'rm', requestRetry: { attempts: 3, initialDelayMs: 1, maxDelayMs: 5 }, ...config }), deps());
  return mainValues<Conversation>(await processor.process(inputs(records), stageContext()));
}

/** The error of each record, which must have failed (to be retried alone by the runner). */
async function failures(config: Record<string, unknown>, records = [makeConversation(1, 'What is 2+2?', '4')]): Promise<unknown[]> {
  processor = tagReward.create(tagReward.config.parse({ model: 'rm', requestRetry: { attempts: 3, initialDelayMs: 1, maxDelayMs: 5 }, ...config }), deps());
  const outcomes = await processor.process(inputs(records), stageContext());
  return outcomes.map((o) => {
    if (o.kind !== 'failed') throw new Error(`expected a failed outcome, got ${o.kind}`);
    return o.error;
  });
}

afterEach(async () => {
  await processor?.close?.();
  processor = undefined;
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

describe('tag-reward', () => {
  it('vllm-classify: posts the filled-in template to /classify without activation and reads the raw logit', async () => {
    const { url, seen } = await rewardServer((_, __, res) => json(res, { data: [{ index: 0, label: 'LABEL_0', probs: [-2.25], num_classes: 1 }] }));
    const [out] = await score({ url: `${url}/`, api: 'vllm-classify', textTemplate: '<u>{instruction}</u><a>{response}</a>' });
    expect(out).toMatchObject({ instruct_reward: -2.25, reward_model: 'rm', tag_failures: [] });
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/classify', body: { model: 'rm', input: ['<u>What is 2+2?</u><a>4</a>'], use_activation: false } });
  });

  it('vllm-pooling: posts chat messages to /pooling and reads a score, a [score] or the last per-token row', async () => {
    const shapes = [1.5, [2.5, 9], [[0.1], [0.2], [3.5]]];
    const { url, seen } = await rewardServer((_, call, res) => json(res, { data: [{ index: 0, object: 'pooling', data: shapes[call] }] }));
    const records = [1, 2, 3].map((i) => makeConversation(i, `q${i}`, `a${i}`));
    const out = await score({ url, api: 'vllm-pooling', maxInFlight: 1 }, records);
    expect(out.map((o) => o.instruct_reward)).toEqual([1.5, 2.5, 3.5]);
    expect(seen[0]).toMatchObject({ url: '/pooling', body: { model: 'rm', messages: [{ role: 'user', content: 'q1' }, { role: 'assistant', content: 'a1' }] } });
  });

  it('score-json: posts instruction and response to the URL as given, with a bearer token from the environment', async () => {
    process.env.MAGPIE_TEST_RM_KEY = 'sk-test-1234';
    const { url, seen } = await rewardServer((s, _, res) => json(res, { score: (s.body.instruction as string).length }));
    const [out] = await score({ url: `${url}/v1/score`, api: 'score-json', apiKeyEnv: 'MAGPIE_TEST_RM_KEY' });
    expect(out!.instruct_reward).toBe('What is 2+2?'.length);
    expect(seen[0]).toMatchObject({ url: '/v1/score', body: { model: 'rm', instruction: 'What is 2+2?', response: '4' } });
    expect(seen[0]!.headers.authorization).toBe('Bearer sk-test-1234');
    delete process.env.MAGPIE_TEST_RM_KEY;
  });

  it('retries 503s and then succeeds', async () => {
    const { url, seen } = await rewardServer((_, call, res) => (call < 2 ? json(res, { error: 'busy' }, 503) : json(res, { score: 0.25 })));
    const [out] = await score({ url, api: 'score-json' });
    expect(out!.instruct_reward).toBe(0.25);
    expect(seen).toHaveLength(3);
  });

  it('fails the record with a retryable error once retries run out, so the runner retries it alone', async () => {
    const { url, seen } = await rewardServer((_, __, res) => json(res, { error: 'overloaded' }, 429));
    expect(await failures({ url, api: 'score-json' })).toEqual([expect.objectContaining({ code: 'INFERENCE_HTTP', retryable: true })]);
    expect(seen).toHaveLength(3);
  });

  it('times out a server that does not answer', async () => {
    const { url } = await rewardServer(() => undefined);
    expect(await failures({ url, api: 'score-json', timeoutMs: 200, requestRetry: { attempts: 2, initialDelayMs: 1, maxDelayMs: 1 } })).toEqual([expect.objectContaining({ code: 'INFERENCE_TIMEOUT', retryable: true })]);
  });

  it('treats a refused connection as retryable', async () => {
    const { url } = await rewardServer(() => undefined);
    await new Promise((resolve) => server!.close(resolve));
    server = undefined;
    expect(await failures({ url, api: 'score-json', requestRetry: { attempts: 1, initialDelayMs: 1, maxDelayMs: 1 } })).toEqual([expect.objectContaining({ code: 'INFERENCE_CONNECTION', retryable: true })]);
  });

  it('records a tag failure for 4xx answers and unexpected shapes, without retrying them', async () => {
    const answers: [number, unknown][] = [[400, { error: 'bad request' }], [200, { data: [{ probs: [] }] }], [200, { score: 'high' }]];
    const { url, seen } = await rewardServer((_, call, res) => json(res, answers[call]![1], answers[call]![0]));
    const records = [1, 2, 3].map((i) => makeConversation(i, `q${i}`, `a${i}`));
    const out = await score({ url, api: 'score-json', maxInFlight: 1 }, records);
    expect(seen).toHaveLength(3);
    expect(out.map((o) => o.instruct_reward)).toEqual([null, null, null]);
    expect(out[0]!.tag_failures[0]).toMatchObject({ tag: 'instruct_reward' });
    expect(out[0]!.tag_failures[0]!.reason).toMatch(/^INFERENCE_HTTP: .*HTTP 400/);
    expect(out[1]!.tag_failures[0]!.reason).toMatch(/^INFERENCE_BAD_RESPONSE: /);
    expect(out[2]!.tag_failures[0]!.reason).toMatch(/^INFERENCE_BAD_RESPONSE: /);
  });

  it('refuses a missing API key variable when the stage is created', () => {
    expect(() => tagReward.create(tagReward.config.parse({ url: 'http://127.0.0.1:1', api: 'score-json', model: 'rm', apiKeyEnv: 'MAGPIE_TEST_UNSET_VAR' }), deps())).toThrow(/MAGPIE_TEST_UNSET_VAR/);
  });
});
