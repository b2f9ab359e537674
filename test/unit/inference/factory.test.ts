import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, InferenceError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { backendConfigSchema, createBackend, defaultGgufPath } from '../../../src/inference/factory.js';
import { OpenAIBackend } from '../../../src/inference/openai.js';

const logger = createLogger({ level: 'silent' });

describe('backendConfigSchema', () => {
  it('fills openai defaults', () => {
    const c = backendConfigSchema.parse({ type: 'openai', baseUrl: 'http://localhost:8000/v1', model: 'meta-llama/Meta-Llama-3-8B-Instruct' });
    expect(c).toMatchObject({ server: 'vllm', apiKeyEnv: 'OPENAI_API_KEY', retries: 4, timeoutMs: 600_000 });
  });

  it('runs as many requests at once as the servers\' batches hold, unless maxConcurrency says otherwise', async () => {
    const concurrency = async (extra: Record<string, unknown>) => {
      const backend = await createBackend('b', backendConfigSchema.parse({ type: 'openai', baseUrl: 'http://127.0.0.1:8000/v1', model: 'm', ...extra }), createLogger({ level: 'silent' }), {});
      await backend.close();
      return backend.concurrency;
    };
    expect(await concurrency({})).toBe(256);
    expect(await concurrency({ server: 'tgi' })).toBe(128);
    expect(await concurrency({ server: 'generic' })).toBe(64);
    expect(await concurrency({ serverBatch: 512 })).toBe(512);
    expect(await concurrency({ baseUrl: undefined, baseUrls: ['http://127.0.0.1:8000/v1', 'http://127.0.0.1:8001/v1'], serverBatch: 100 })).toBe(200);
    expect(await concurrency({ serverBatch: 512, maxConcurrency: 1000 })).toBe(1000);
  });

  it('fills llamacpp defaults and accepts gpu: false', () => {
    expect(backendConfigSchema.parse({ type: 'llamacpp' })).toMatchObject({ contextSize: 4096, sequences: 4, gpu: 'auto' });
    expect(backendConfigSchema.parse({ type: 'llamacpp', gpu: false, family: 'smollm2' })).toMatchObject({ gpu: false, family: 'smollm2' });
  });

  it('names the bad field', () => {
    const cases: [unknown, string][] = [
      [{ type: 'openai', model: 'm' }, 'baseUrl'],
      [{ type: 'openai', model: 'm', baseUrl: 'http://a/v1', baseUrls: ['http://b/v1'] }, 'baseUrl'],
      [{ type: 'openai', model: 'm', baseUrl: 'not a url' }, 'baseUrl'],
      [{ type: 'openai', model: 'm', baseUrl: 'http://a/v1', server: 'ollama' }, 'server'],
      [{ type: 'openai', model: 'm', baseUrl: 'http://a/v1', maxConcurency: 3 }, ''],
      [{ type: 'llamacpp', sequences: 0 }, 'sequences'],
      [{ type: 'llamacpp', gpu: true }, 'gpu'],
      [{ type: 'llamacpp', family: 'llama9' }, 'family'],
      [{ type: 'tgi' }, 'type'],
    ];
    for (const [input, path] of cases) {
      const r = backendConfigSchema.safeParse(input);
      expect(r.success, JSON.stringify(input)).toBe(false);
      expect(r.error!.issues.map((i) => i.path.join('.'))).toContain(path);
    }
  });
});

describe('createBackend', () => {
  async function authHeaderSeen(apiKeyConfig: Record<string, unknown>, env: NodeJS.ProcessEnv): Promise<string | undefined> {
    let seen: IncomingMessage['headers']['authorization'];
    const server = createServer((req, res) => {
      seen = req.headers.authorization;
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ choices: [{ index: 0, text: 'ok', finish_reason: 'stop' }], usage: { completion_tokens: 1 } }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    const config = backendConfigSchema.parse({ type: 'openai', baseUrl: url, model: 'm', ...apiKeyConfig });
    const backend = await createBackend('gpu', config, logger, env);
    try {
      expect(backend).toBeInstanceOf(OpenAIBackend);
      expect(backend.id).toBe('openai:m');
      await backend.complete({ prompt: 'p', temperature: 1, topP: 1, maxTokens: 4 });
    } finally {
      await backend.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    return seen;
  }

  it('takes the API key from the named environment variable', async () => {
    expect(await authHeaderSeen({ apiKeyEnv: 'MY_KEY' }, { MY_KEY: 'sk-env-1234' })).toBe('Bearer sk-env-1234');
    expect(await authHeaderSeen({}, {})).toBeUndefined();
  });

  it('takes the API key from a secrets file before the environment', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'magpie-key-'));
    writeFileSync(join(dir, 'key'), 'sk-file-5678\n');
    expect(await authHeaderSeen({ apiKeyFile: join(dir, 'key') }, { OPENAI_API_KEY: 'sk-env-0000' })).toBe('Bearer sk-file-5678');
  });

  it('reports an unreadable key file as a config error naming the field', async () => {
    const config = backendConfigSchema.parse({ type: 'openai', baseUrl: 'http://127.0.0.1:9/v1', model: 'm', apiKeyFile: '/nonexistent/key' });
    const err = await createBackend('gpu', config, logger).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain('backends.gpu.apiKeyFile');
  });

  it('reports a missing GGUF before loading llama.cpp', async () => {
    const config = backendConfigSchema.parse({ type: 'llamacpp', modelPath: '/nonexistent/x.gguf' });
    const err = await createBackend('local', config, logger).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InferenceError);
    expect((err as InferenceError).code).toBe('INFERENCE_UNAVAILABLE');
  });

  it('defaults the GGUF to MAGPIE_LLM_GGUF, else the fetch-models cache', () => {
    expect(defaultGgufPath({ MAGPIE_LLM_GGUF: '/m/x.gguf' })).toBe('/m/x.gguf');
    expect(defaultGgufPath({ MAGPIE_CACHE: '/c' })).toBe('/c/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf');
  });
});
