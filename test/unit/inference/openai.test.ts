import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { InferenceError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { OpenAIBackend, parseRetryAfter, splitTokens, type OpenAIBackendOptions } from '../../../src/inference/openai.js';
import { familyTemplate } from '../../../src/inference/templates.js';

interface Seen {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

type Handler = (seen: Seen, res: ServerResponse, req: IncomingMessage, index: number) => void | Promise<void>;

interface TestServer {
  url: string;
  seen: Seen[];
  maxInFlight: number;
  close(): Promise<void>;
}

const servers: TestServer[] = [];
const backends: OpenAIBackend[] = [];

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function startServer(handler: Handler): Promise<TestServer> {
  const sockets = new Set<Socket>();
  let inFlight = 0;
  const state: TestServer = { url: '', seen: [], maxInFlight: 0, close: async () => {} };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen: Seen = { path: req.url ?? '', headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString() || '{}') };
      const index = state.seen.push(seen) - 1;
      inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, inFlight);
      res.on('close', () => inFlight--);
      void handler(seen, res, req, index);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  servers.push(state);
  return state;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** A vLLM-shaped /v1/completions or /v1/chat/completions response. */
function vllmResponse(seen: Seen, texts: string[], finish: string[] = [], completionTokens?: number): unknown {
  const chat = seen.path.endsWith('/chat/completions');
  return {
    id: 'cmpl-test',
    object: chat ? 'chat.completion' : 'text_completion',
    created: 0,
    model: seen.body.model,
    choices: texts.map((text, index) => ({
      index,
      ...(chat ? { message: { role: 'assistant', content: text } } : { text }),
      logprobs: null,
      finish_reason: finish[index] ?? 'stop',
      stop_reason: null,
    })),
    usage: { prompt_tokens: 5, completion_tokens: completionTokens ?? texts.length * 3, total_tokens: 5 + (completionTokens ?? texts.length * 3) },
  };
}

function backend(urls: string | string[], overrides: Partial<OpenAIBackendOptions> = {}): OpenAIBackend {
  const b = new OpenAIBackend({
    name: 'test',
    baseUrls: Array.isArray(urls) ? urls : [urls],
    model: 'meta-llama/Meta-Llama-3-8B-Instruct',
    server: 'vllm',
    maxConcurrency: 8,
    timeoutMs: 5_000,
    retries: 3,
    initialBackoffMs: 10,
    maxBackoffMs: 50,
    logger: createLogger({ level: 'silent' }),
    ...overrides,
  });
  backends.push(b);
  return b;
}

const sampling = { temperature: 1, topP: 1, maxTokens: 256 };

async function rejection(p: Promise<unknown>): Promise<InferenceError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InferenceError);
  return err as InferenceError;
}

describe('OpenAIBackend request bodies (vLLM)', () => {
  it('sends a Llama-3 pre-query as a raw completion with vLLM sampling fields', async () => {
    const srv = await startServer((seen, res) => json(res, 200, vllmResponse(seen, ['How do I bake bread?', 'What is a monad?', 'x'.repeat(40)], ['stop', 'stop', 'length'], 30)));
    const t = familyTemplate('llama3');
    const out = await backend(srv.url).complete({ prompt: t.preQueryTemplate, n: 3, ...sampling, stop: [...t.stop], stopTokenIds: [...t.stopTokenIds] });

    expect(srv.seen).toHaveLength(1);
    expect(srv.seen[0]!.path).toBe('/v1/completions');
    expect(srv.seen[0]!.body).toEqual({
      model: 'meta-llama/Meta-Llama-3-8B-Instruct',
      prompt: '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n',
      n: 3,
      temperature: 1,
      top_p: 1,
      max_tokens: 256,
      stop: ['<|eot_id|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>'],
      stop_token_ids: [128009, 128001, 128006, 128007],
      skip_special_tokens: true,
      add_special_tokens: false,
    });
    expect(out.map((c) => c.text)).toEqual(['How do I bake bread?', 'What is a monad?', 'x'.repeat(40)]);
    expect(out.map((c) => c.finishReason)).toEqual(['stop', 'stop', 'length']);
    expect(out.reduce((a, c) => a + c.tokens, 0)).toBe(30);
    expect(out[2]!.tokens).toBeGreaterThan(out[0]!.tokens);
  });

  it('lets vLLM add special tokens when the prompt has no BOS, and sends seed, repetition penalty and a JSON schema', async () => {
    const srv = await startServer((seen, res) => json(res, 200, vllmResponse(seen, ['{"a":1}'])));
    const schema = { type: 'object', properties: { a: { type: 'number' } }, required: ['a'] };
    await backend(srv.url).complete({ prompt: '<|im_start|>user\n', ...sampling, seed: 7, repetitionPenalty: 1.1, jsonSchema: schema });
    const body = srv.seen[0]!.body;
    expect(body).not.toHaveProperty('add_special_tokens');
    expect(body).not.toHaveProperty('stop');
    expect(body).not.toHaveProperty('stop_token_ids');
    expect(body).toMatchObject({ n: 1, seed: 7, repetition_penalty: 1.1, skip_special_tokens: true, max_tokens: 256 });
    expect(body.response_format).toEqual({ type: 'json_schema', json_schema: { name: 'output', schema, strict: true } });
  });

  it('sends guided_json when configured for older vLLM', async () => {
    const srv = await startServer((seen, res) => json(res, 200, vllmResponse(seen, ['{}'])));
    await backend(srv.url, { jsonSchemaField: 'guided_json' }).complete({ prompt: 'x', ...sampling, jsonSchema: { type: 'object' } });
    expect(srv.seen[0]!.body.guided_json).toEqual({ type: 'object' });
    expect(srv.seen[0]!.body).not.toHaveProperty('response_format');
  });

  it('keeps the thinking part a reasoning parser returns apart from the answer', async () => {
    const srv = await startServer((_seen, res) =>
      json(res, 200, { choices: [{ index: 0, message: { role: 'assistant', content: 'It is 4.', reasoning_content: 'Two and two make four.' }, finish_reason: 'stop' }], usage: { completion_tokens: 9 } }),
    );
    const [out] = await backend(srv.url).chat({ messages: [{ role: 'user', content: '2+2?' }], temperature: 0, topP: 1, maxTokens: 64 });
    expect(out).toEqual({ text: 'It is 4.', reasoning: 'Two and two make four.', finishReason: 'stop', tokens: 9 });
  });

  it('posts chat turns to /chat/completions', async () => {
    const srv = await startServer((seen, res) => json(res, 200, vllmResponse(seen, ['Paris.'], ['stop'], 2)));
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Capital of France?' },
    ];
    const out = await backend(srv.url).chat({ messages, temperature: 0, topP: 1, maxTokens: 64, stop: ['<|eot_id|>'] });
    expect(srv.seen[0]!.path).toBe('/v1/chat/completions');
    expect(srv.seen[0]!.body).toEqual({
      model: 'meta-llama/Meta-Llama-3-8B-Instruct',
      messages,
      n: 1,
      temperature: 0,
      top_p: 1,
      max_tokens: 64,
      stop: ['<|eot_id|>'],
      skip_special_tokens: true,
    });
    expect(out).toEqual([{ text: 'Paris.', finishReason: 'stop', tokens: 2, promptTokens: 5 }]);
  });

  it('strips the BOS for other servers and splits n into seeded single requests where n is ignored', async () => {
    const srv = await startServer((seen, res) => json(res, 200, vllmResponse(seen, [`sample ${String(seen.body.seed)}`], ['stop'], 4)));
    const t = familyTemplate('llama3');
    const out = await backend(srv.url, { server: 'llamacpp' }).complete({ prompt: t.preQueryTemplate, n: 3, seed: 10, ...sampling, stop: [...t.stop], stopTokenIds: [...t.stopTokenIds] });
    expect(srv.seen).toHaveLength(3);
    for (const s of srv.seen) {
      expect(s.body.prompt).toBe('<|start_header_id|>user<|end_header_id|>\n\n');
      expect(s.body.n).toBe(1);
      expect(s.body).not.toHaveProperty('stop_token_ids');
      expect(s.body).not.toHaveProperty('skip_special_tokens');
    }
    expect(srv.seen.map((s) => s.body.seed).sort()).toEqual([10, 11, 12]);
    expect(out.map((c) => c.text).sort()).toEqual(['sample 10', 'sample 11', 'sample 12']);
    // Each sample carries the seed its request actually sent.
    for (const c of out) expect(c.text).toBe(`sample ${c.seed}`);
  });

  it('labels the n choices of one request with its seed, and bans first tokens with logit_bias', async () => {
    const srv = await startServer((seen, res) => json(res, 200, vllmResponse(seen, ['a?', 'b?'], ['stop', 'stop'], 4)));
    const t = familyTemplate('llama3.1');
    const out = await backend(srv.url).complete({ prompt: t.preQueryTemplate, n: 2, seed: 5, ...sampling, firstTokenBans: [...t.markdownHeaderTokenIds!] });
    expect(out.map((c) => c.seed)).toEqual([5, 5]);
    expect(srv.seen[0]!.body).toMatchObject({ seed: 5, logit_bias: { '2': -100, '567': -100, '14711': -100, '827': -100 } });
  });

  it('asks again for the missing samples when a server returns fewer choices than n', async () => {
    const srv = await startServer((seen, res) => json(res, 200, vllmResponse(seen, ['one'])));
    const out = await backend(srv.url, { server: 'generic' }).complete({ prompt: 'p', n: 3, ...sampling });
    expect(out).toHaveLength(3);
    expect(srv.seen.map((s) => s.body.n)).toEqual([3, 1, 1]);
  });
});

describe('OpenAIBackend errors and retries', () => {
  it('retries a 429 after its Retry-After, then succeeds', async () => {
    const srv = await startServer((seen, res, _req, i) =>
      i === 0 ? json(res, 429, { error: { message: 'rate limited' } }, { 'retry-after': '1' }) : json(res, 200, vllmResponse(seen, ['ok'])),
    );
    const t0 = Date.now();
    const out = await backend(srv.url).complete({ prompt: 'p', ...sampling });
    expect(out[0]!.text).toBe('ok');
    expect(srv.seen).toHaveLength(2);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
  });

  it('retries a 500', async () => {
    const srv = await startServer((seen, res, _req, i) => (i === 0 ? json(res, 500, { message: 'engine hiccup' }) : json(res, 200, vllmResponse(seen, ['ok']))));
    const out = await backend(srv.url).complete({ prompt: 'p', ...sampling });
    expect(out[0]!.text).toBe('ok');
    expect(srv.seen).toHaveLength(2);
  });

  it('gives up on a 5xx after the configured retries with a retryable INFERENCE_HTTP', async () => {
    const srv = await startServer((_seen, res) => json(res, 503, { error: { message: 'overloaded' } }));
    const err = await rejection(backend(srv.url, { retries: 2 }).complete({ prompt: 'p', ...sampling }));
    expect(err.code).toBe('INFERENCE_HTTP');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('overloaded');
    expect(srv.seen).toHaveLength(3);
  });

  it('times out a hanging server with INFERENCE_TIMEOUT', async () => {
    const srv = await startServer(() => {
      // Never answers.
    });
    const t0 = Date.now();
    const err = await rejection(backend(srv.url, { timeoutMs: 300, retries: 1 }).complete({ prompt: 'p', ...sampling }));
    expect(err.code).toBe('INFERENCE_TIMEOUT');
    expect(err.retryable).toBe(true);
    expect(srv.seen).toHaveLength(2);
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it('retries a dropped connection', async () => {
    const srv = await startServer((seen, res, req, i) => {
      if (i === 0) req.socket.destroy();
      else json(res, 200, vllmResponse(seen, ['ok']));
    });
    const out = await backend(srv.url).complete({ prompt: 'p', ...sampling });
    expect(out[0]!.text).toBe('ok');
    expect(srv.seen).toHaveLength(2);
  });

  it('reports a dropped connection as a retryable INFERENCE_CONNECTION when retries run out', async () => {
    const srv = await startServer((_seen, _res, req) => {
      req.socket.destroy();
    });
    const err = await rejection(backend(srv.url, { retries: 0 }).complete({ prompt: 'p', ...sampling }));
    expect(err.code).toBe('INFERENCE_CONNECTION');
    expect(err.retryable).toBe(true);
  });

  it('does not retry a 400 and reports the server message', async () => {
    const srv = await startServer((_seen, res) =>
      json(res, 400, { object: 'error', message: "This model's maximum context length is 4096 tokens", type: 'BadRequestError', code: 400 }),
    );
    const err = await rejection(backend(srv.url).complete({ prompt: 'p', ...sampling }));
    expect(err.code).toBe('INFERENCE_HTTP');
    expect(err.retryable).toBe(false);
    expect(err.details?.status).toBe(400);
    expect(err.message).toContain('maximum context length is 4096 tokens');
    expect(srv.seen).toHaveLength(1);
  });

  it('treats a non-JSON 200 as a retryable bad response', async () => {
    const srv = await startServer((seen, res, _req, i) => {
      if (i === 0) {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html>proxy error</html>');
      } else json(res, 200, vllmResponse(seen, ['ok']));
    });
    const out = await backend(srv.url).complete({ prompt: 'p', ...sampling });
    expect(out[0]!.text).toBe('ok');
    expect(srv.seen).toHaveLength(2);
  });

  it('sends the API key as a Bearer token and keeps it out of errors and logs', async () => {
    const key = 'sk-test-7f3a9c2e1b';
    const srv = await startServer((seen, res) => json(res, 401, { error: { message: `invalid key ${String(seen.headers.authorization)}` } }));
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const b = backend(srv.url, { apiKey: key, logger: createLogger({ level: 'debug' }, sink) });
    const err = await rejection(b.complete({ prompt: 'p', ...sampling }));
    expect(srv.seen[0]!.headers.authorization).toBe(`Bearer ${key}`);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('[redacted]');
    expect(err.message).toContain('check the API key');
    expect(err.message).not.toContain(key);
    expect(JSON.stringify(err.details)).not.toContain(key);
    expect(lines.join('')).not.toContain(key);
  });

  it('rejects with the caller abort reason and does not retry', async () => {
    const srv = await startServer(() => {
      // Never answers.
    });
    const ac = new AbortController();
    const p = backend(srv.url).complete({ prompt: 'p', ...sampling, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('shutting down')), 100);
    await expect(p).rejects.toThrow('shutting down');
    expect(srv.seen).toHaveLength(1);
  });

  it('refuses requests after close()', async () => {
    const srv = await startServer((seen, res) => json(res, 200, vllmResponse(seen, ['ok'])));
    const b = backend(srv.url);
    await b.complete({ prompt: 'p', ...sampling });
    await b.close();
    expect(b.health()).toBe('closed');
    const err = await rejection(b.complete({ prompt: 'p', ...sampling }));
    expect(err.code).toBe('INFERENCE_UNAVAILABLE');
    expect(err.retryable).toBe(false);
  });
});

describe('OpenAIBackend balancing and concurrency', () => {
  const slow = (ms: number): Handler => (seen, res) => {
    setTimeout(() => json(res, 200, vllmResponse(seen, ['ok'])), ms);
  };

  it('balances requests across two base URLs', async () => {
    const a = await startServer(slow(50));
    const b = await startServer(slow(50));
    const be = backend([a.url, b.url]);
    await Promise.all(Array.from({ length: 20 }, () => be.complete({ prompt: 'p', ...sampling })));
    expect(a.seen.length + b.seen.length).toBe(20);
    expect(Math.abs(a.seen.length - b.seen.length)).toBeLessThanOrEqual(2);
    expect(be.health()).toBe('ok');
  });

  it('skips a URL that refuses connections and reports the backend degraded', async () => {
    const good = await startServer(slow(5));
    const dead = await startServer(slow(5));
    const deadUrl = dead.url;
    await dead.close();
    servers.splice(servers.indexOf(dead), 1);
    const be = backend([deadUrl, good.url], { cooldownMs: 60_000 });
    for (let i = 0; i < 6; i++) await be.complete({ prompt: 'p', ...sampling });
    expect(good.seen).toHaveLength(6);
    expect(be.health()).toBe('degraded');
  });

  it('never has more than maxConcurrency requests in flight', async () => {
    const srv = await startServer(slow(40));
    const be = backend(srv.url, { maxConcurrency: 3 });
    await Promise.all(Array.from({ length: 12 }, () => be.complete({ prompt: 'p', ...sampling })));
    expect(srv.seen).toHaveLength(12);
    expect(srv.maxInFlight).toBe(3);
  });
});

describe('helpers', () => {
  it('splits a total token count across choices so the parts add up', () => {
    expect(splitTokens(10, ['abc'])).toEqual([10]);
    const parts = splitTokens(31, ['a', 'bbbbbbbbbb', 'cccc']);
    expect(parts.reduce((x, y) => x + y, 0)).toBe(31);
    expect(parts[1]).toBeGreaterThan(parts[2]!);
    expect(splitTokens(undefined, ['abcdefgh'])).toEqual([2]);
  });

  it('parses Retry-After in seconds and as a date', () => {
    expect(parseRetryAfter('2')).toBe(2_000);
    expect(parseRetryAfter(new Date(10_000 + 3_000).toUTCString(), 10_000)).toBe(3_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});
