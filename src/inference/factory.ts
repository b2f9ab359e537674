import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { registerSecret, type Logger } from '../core/logger.js';
import { readSecretFile } from '../core/secrets.js';
import type { InferenceBackend } from './backend.js';
import { OpenAIBackend, type OpenAIServer } from './openai.js';
import { TEMPLATE_FAMILIES } from './templates.js';

const positiveInt = z.number().int().positive();

const openaiConfigSchema = z
  .object({
    type: z.literal('openai'),
    /** One server, e.g. http://localhost:8000/v1 */
    baseUrl: z.url().optional(),
    /** Several servers of the same model, balanced by requests in flight. */
    baseUrls: z.array(z.url()).min(1).optional(),
    model: z.string().min(1),
    server: z.enum(['vllm', 'sglang', 'llamacpp', 'tgi', 'generic']).default('vllm'),
    /** Environment variable holding the API key (none needed for a local server). */
    apiKeyEnv: z.string().min(1).default('OPENAI_API_KEY'),
    /** File holding the API key (e.g. a mounted secret); wins over apiKeyEnv. */
    apiKeyFile: z.string().min(1).optional(),
    /**
     * Sequences the server runs at once (vLLM --max-num-seqs, SGLang --max-running-requests). Default: the
     * server's own default (vLLM and SGLang 256, TGI 128, llama.cpp 4, others 64).
     */
    serverBatch: positiveInt.optional(),
    /** Requests in flight at once across all URLs. Default: serverBatch per URL, so every server's batch stays full. */
    maxConcurrency: positiveInt.optional(),
    connectionsPerUrl: positiveInt.optional(),
    /** Per attempt, whole response included. */
    timeoutMs: positiveInt.default(600_000),
    /** Attempts after the first on 429, 5xx, timeouts and connection errors. */
    retries: z.number().int().min(0).default(4),
    cooldownMs: positiveInt.optional(),
    supportsN: z.boolean().optional(),
    jsonSchemaField: z.enum(['response_format', 'guided_json']).optional(),
    bosTokens: z.array(z.string().min(1)).optional(),
    extraBody: z.record(z.string(), z.unknown()).optional(),
  })
  .strict()
  .refine((c) => (c.baseUrl === undefined) !== (c.baseUrls === undefined), {
    message: 'give baseUrl or baseUrls (not both)',
    path: ['baseUrl'],
  });

const llamacppConfigSchema = z
  .object({
    type: z.literal('llamacpp'),
    /** GGUF chat model; default $MAGPIE_LLM_GGUF, else the SmolLM2 file scripts/fetch-models.sh fetches. */
    modelPath: z.string().min(1).optional(),
    /** Model name for output records; default: the GGUF file name. */
    model: z.string().min(1).optional(),
    /** Chat format for chat turns; default: detected from the GGUF. */
    family: z.enum(TEMPLATE_FAMILIES).optional(),
    /** Tokens per sequence (prompt + generation). */
    contextSize: positiveInt.default(4096),
    /** Requests generated in parallel. */
    sequences: positiveInt.default(4),
    gpu: z.union([z.enum(['auto', 'cuda']), z.literal(false)]).default('auto'),
    /** CPU threads; default cores - 1. */
    threads: positiveInt.optional(),
    batchSize: positiveInt.optional(),
  })
  .strict();

/** A `backends.<name>` entry of a topology. */
export const backendConfigSchema = z.discriminatedUnion('type', [openaiConfigSchema, llamacppConfigSchema]);
export type BackendConfig = z.output<typeof backendConfigSchema>;
export type BackendConfigInput = z.input<typeof backendConfigSchema>;

/** Where scripts/fetch-models.sh puts the SmolLM2 GGUF. */
export function defaultGgufPath(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.MAGPIE_LLM_GGUF?.trim();
  if (fromEnv) return fromEnv;
  const cache = env.MAGPIE_CACHE?.trim() || join(homedir(), '.cache', 'magpie-stream');
  return join(cache, 'models', 'smollm2-135m-instruct', 'SmolLM2-135M-Instruct.Q4_1.gguf');
}

function resolveApiKey(name: string, config: z.output<typeof openaiConfigSchema>, env: NodeJS.ProcessEnv, logger: Logger): string | undefined {
  if (config.apiKeyFile !== undefined) return readSecretFile(config.apiKeyFile, `backends.${name}.apiKeyFile`, logger);
  return env[config.apiKeyEnv]?.trim() || undefined;
}

/** The batch each kind of server runs by default. */
const DEFAULT_SERVER_BATCH: Record<OpenAIServer, number> = { vllm: 256, sglang: 256, tgi: 128, llamacpp: 4, generic: 64 };

/** Requests a backend runs at once, from its config alone (for stages whose backend this process does not load). */
export function configuredConcurrency(config: BackendConfig): number {
  if (config.type === 'llamacpp') return config.sequences;
  return config.maxConcurrency ?? (config.serverBatch ?? DEFAULT_SERVER_BATCH[config.server]) * (config.baseUrls?.length ?? 1);
}

/** Builds (and, for llama.cpp, loads) the backend a validated config describes. */
export async function createBackend(name: string, config: BackendConfig, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<InferenceBackend> {
  if (config.type === 'openai') {
    const apiKey = resolveApiKey(name, config, env, logger);
    registerSecret(apiKey);
    return new OpenAIBackend({
      name,
      baseUrls: config.baseUrls ?? [config.baseUrl!],
      model: config.model,
      server: config.server,
      ...(apiKey === undefined ? {} : { apiKey }),
      maxConcurrency: configuredConcurrency(config),
      ...(config.connectionsPerUrl === undefined ? {} : { connectionsPerUrl: config.connectionsPerUrl }),
      timeoutMs: config.timeoutMs,
      retries: config.retries,
      ...(config.cooldownMs === undefined ? {} : { cooldownMs: config.cooldownMs }),
      ...(config.supportsN === undefined ? {} : { supportsN: config.supportsN }),
      ...(config.jsonSchemaField === undefined ? {} : { jsonSchemaField: config.jsonSchemaField }),
      ...(config.bosTokens === undefined ? {} : { bosTokens: config.bosTokens }),
      ...(config.extraBody === undefined ? {} : { extraBody: config.extraBody }),
      logger,
    });
  }
  // Loaded on demand: topologies that only use remote servers never load the native runtime.
  const { LlamaCppBackend } = await import('./llamacpp.js');
  return LlamaCppBackend.load({
    name,
    modelPath: config.modelPath ?? defaultGgufPath(env),
    ...(config.model === undefined ? {} : { model: config.model }),
    ...(config.family === undefined ? {} : { family: config.family }),
    contextSize: config.contextSize,
    sequences: config.sequences,
    gpu: config.gpu,
    ...(config.threads === undefined ? {} : { threads: config.threads }),
    ...(config.batchSize === undefined ? {} : { batchSize: config.batchSize }),
    logger,
  });
}
