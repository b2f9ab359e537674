/**
 * The OpenAI backend against a real OpenAI-compatible server: llama-cpp-python's server running SmolLM2.
 * Install it with: CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install 'llama-cpp-python[server]==0.3.36'
 * (builds llama.cpp from source, about 12 minutes on 2 cores). Skipped, with the reason logged, when the
 * package or the GGUF is missing. This server ignores `n` and serialises requests: a protocol peer, not a
 * throughput one.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { OpenAIBackend } from '../../../src/inference/openai.js';
import { familyTemplate } from '../../../src/inference/templates.js';
import { smolLmGguf } from './models.js';

const python = process.env.PYTHON?.trim() || 'python3';
const gguf = smolLmGguf();
const hasServer = spawnSync(python, ['-c', 'import llama_cpp.server'], { stdio: 'ignore' }).status === 0;
const skipReason = !gguf
  ? 'no GGUF (run scripts/fetch-models.sh)'
  : !hasServer
    ? `python package llama-cpp-python[server] not importable by ${python} (pip install 'llama-cpp-python[server]')`
    : undefined;
if (skipReason) console.warn(`[openai-llamacpp-server.test] SKIPPED: ${skipReason}`);

const smollm2 = familyTemplate('smollm2');
const logger = createLogger({ level: 'warn' });

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function waitReady(url: string, child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`llama_cpp.server exited with ${child.exitCode}:\n${output()}`);
    try {
      const res = await fetch(`${url}/models`);
      if (res.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`llama_cpp.server not ready within ${timeoutMs} ms:\n${output()}`);
}

describe.skipIf(skipReason !== undefined)('OpenAIBackend against llama-cpp-python server (SmolLM2)', () => {
  let child: ChildProcess;
  let baseUrl: string;
  let backend: OpenAIBackend;

  beforeAll(async () => {
    const port = await freePort();
    let log = '';
    child = spawn(python, ['-m', 'llama_cpp.server', '--model', gguf!, '--host', '127.0.0.1', '--port', String(port), '--n_ctx', '2048', '--n_threads', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    baseUrl = `http://127.0.0.1:${port}/v1`;
    await waitReady(baseUrl, child, () => log.slice(-4000), 120_000);
    backend = new OpenAIBackend({
      name: 'llama-cpp-python',
      baseUrls: [baseUrl],
      model: 'SmolLM2-135M-Instruct',
      server: 'llamacpp',
      maxConcurrency: 4,
      timeoutMs: 120_000,
      retries: 2,
      logger,
    });
  });

  afterAll(async () => {
    await backend?.close();
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  });

  it('generates instructions from the raw pre-query (special tokens parsed by the server, n split into seeded requests)', async () => {
    const out = await backend.complete({ prompt: smollm2.preQueryTemplate, n: 3, seed: 1234, temperature: 1, topP: 1, maxTokens: 128, stop: [...smollm2.stop] });
    expect(out).toHaveLength(3);
    console.info(`[openai-llamacpp-server.test] instructions:\n${out.map((c) => `  - [${c.finishReason}, ${c.tokens} tok] ${JSON.stringify(c.text.trim().slice(0, 140))}`).join('\n')}`);
    expect(new Set(out.map((c) => c.text)).size).toBe(3);
    for (const c of out) {
      expect(smollm2.leaks(c.text)).toEqual([]);
      expect(c.tokens).toBeGreaterThan(0);
    }
    expect(out.some((c) => c.finishReason === 'stop' && c.text.trim().length > 0)).toBe(true);
  });

  it('reports max_tokens truncation as length', async () => {
    const [c] = await backend.complete({ prompt: smollm2.formatConversation([{ role: 'user', content: 'Write a long story about a dragon.' }]), temperature: 0, topP: 1, maxTokens: 8 });
    expect(c!.finishReason).toBe('length');
    expect(c!.tokens).toBe(8);
  });

  it('chat through the server template equals a raw completion of our formatted conversation', async () => {
    const messages = [{ role: 'user' as const, content: 'Give me three tips for learning to cook.' }];
    const sampling = { temperature: 0, topP: 1, maxTokens: 48 };
    const [viaChat] = await backend.chat({ messages, ...sampling });
    const [viaTemplate] = await backend.complete({ prompt: smollm2.formatConversation(messages), ...sampling, stop: [...smollm2.stop] });
    expect(viaChat!.text.length).toBeGreaterThan(0);
    expect(viaTemplate!.text).toBe(viaChat!.text);
  });

  it('classifies a wrong URL path as a non-retryable HTTP error', async () => {
    const wrong = new OpenAIBackend({
      name: 'wrong',
      baseUrls: [baseUrl.replace(/\/v1$/, '/v0')],
      model: 'x',
      server: 'llamacpp',
      maxConcurrency: 1,
      timeoutMs: 10_000,
      retries: 2,
      logger,
    });
    try {
      const err = await wrong.complete({ prompt: 'hi', temperature: 0, topP: 1, maxTokens: 4 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InferenceError);
      expect((err as InferenceError).code).toBe('INFERENCE_HTTP');
      expect((err as InferenceError).details?.status).toBe(404);
      expect((err as InferenceError).retryable).toBe(false);
    } finally {
      await wrong.close();
    }
    expect(backend.health()).toBe('ok');
  });
});
