import { Agent, request } from 'undici';
import { z } from 'zod';
import { ConfigError, errorMessage, InferenceError, isRetryable } from '../core/errors.js';
import { registerSecret } from '../core/logger.js';
import { withRetry } from '../core/retry.js';

/**
 * Request shapes:
 * - vllm-classify: POST {url}/classify {model, input: [text], use_activation: false}; reads data[0].probs[0],
 *   the raw logit of a one-label reward model (vllm serve --runner pooling --convert classify). `text` is
 *   `textTemplate` filled in: give it the reward model's chat template.
 * - vllm-pooling: POST {url}/pooling {model, messages: [user, assistant]}; the server applies the model's chat
 *   template; reads data[0].data (a number, [score], or per-token rows whose last row holds the score).
 * - score-json: POST {url} {model, instruction, response} → {score}, for a reward server of your own.
 */
export const rewardConfigSchema = z.strictObject({
  url: z.url(),
  api: z.enum(['vllm-classify', 'vllm-pooling', 'score-json']),
  /** Sent to the server and recorded as reward_model. */
  model: z.string().min(1),
  textTemplate: z.string().default('{instruction}\n\n{response}'),
  /** Environment variable holding a bearer token, if the server wants one. */
  apiKeyEnv: z.string().min(1).optional(),
  timeoutMs: z.number().int().min(100).default(60_000),
  requestRetry: z.strictObject({
    attempts: z.number().int().min(1).max(20).default(3),
    initialDelayMs: z.number().int().min(0).default(500),
    maxDelayMs: z.number().int().min(0).default(10_000),
  }).default({ attempts: 3, initialDelayMs: 500, maxDelayMs: 10_000 }),
  /** Requests in flight (the common stage field `concurrency` is input partitions). */
  maxInFlight: z.number().int().min(1).max(1024).default(16),
});
export type RewardConfig = z.infer<typeof rewardConfigSchema>;
type Config = RewardConfig;

/** What a reward model scores: tag-reward passes a Conversation, generate-preferences each candidate. */
export interface RewardInput {
  instruction: string;
  response: string;
}

/** A score, or why the endpoint gave none (an answer that will not change on retry). */
export type RewardScore = { ok: true; value: number } | { ok: false; reason: string };

/** A reward endpoint of the topology (`rewards:`), shared by the stages that name it. */
export interface RewardModel {
  /** Sent to the server and recorded as reward_model. */
  readonly model: string;
  /** Requests the endpoint takes at once: a stage fans out up to this many. */
  readonly maxInFlight: number;
  /** The score, or why there is none; transient faults are retried, then thrown. */
  score(record: RewardInput, signal: AbortSignal): Promise<RewardScore>;
  close(): Promise<void>;
}

const finite = z.number().refine(Number.isFinite, 'not a finite number');
const RESPONSES = {
  'vllm-classify': z.object({ data: z.array(z.object({ probs: z.array(finite).min(1) })).min(1) }).transform((r) => r.data[0]!.probs[0]!),
  'vllm-pooling': z
    .object({ data: z.array(z.object({ data: z.union([finite, z.array(finite).min(1), z.array(z.array(finite).min(1)).min(1)]) })).min(1) })
    .transform((r) => {
      const d = r.data[0]!.data;
      if (typeof d === 'number') return d;
      const first = d[0]!;
      return typeof first === 'number' ? first : (d[d.length - 1] as number[])[0]!;
    }),
  'score-json': z.object({ score: finite }).transform((r) => r.score),
} as const;

function requestFor(cfg: Config, record: RewardInput): { url: string; body: unknown } {
  const base = cfg.url.replace(/\/+$/, '');
  switch (cfg.api) {
    case 'vllm-classify': {
      const text = cfg.textTemplate.replaceAll('{instruction}', record.instruction).replaceAll('{response}', record.response);
      return { url: `${base}/classify`, body: { model: cfg.model, input: [text], use_activation: false } };
    }
    case 'vllm-pooling':
      return { url: `${base}/pooling`, body: { model: cfg.model, messages: [{ role: 'user', content: record.instruction }, { role: 'assistant', content: record.response }] } };
    case 'score-json':
      return { url: base, body: { model: cfg.model, instruction: record.instruction, response: record.response } };
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED']);

/** Scores (instruction, response) pairs with a reward model over HTTP. */
export class RewardClient implements RewardModel {
  private readonly agent: Agent;
  private readonly headers: Record<string, string>;

  readonly model: string;
  readonly maxInFlight: number;

  constructor(
    private readonly cfg: Config,
    /** Names the endpoint in errors: the key under `rewards:`. */
    name = 'reward',
  ) {
    this.model = cfg.model;
    this.maxInFlight = cfg.maxInFlight;
    this.agent = new Agent({ connections: cfg.maxInFlight, headersTimeout: cfg.timeoutMs, bodyTimeout: cfg.timeoutMs });
    this.headers = { 'content-type': 'application/json' };
    if (cfg.apiKeyEnv) {
      const key = process.env[cfg.apiKeyEnv];
      registerSecret(key);
      if (!key) throw new ConfigError(`rewards.${name}.apiKeyEnv: environment variable ${cfg.apiKeyEnv} is not set`, { apiKeyEnv: cfg.apiKeyEnv });
      this.headers.authorization = `Bearer ${key}`;
    }
  }

  async score(record: RewardInput, signal: AbortSignal): Promise<RewardScore> {
    try {
      const score = await withRetry(() => this.post(record, signal), { ...this.cfg.requestRetry, signal });
      return { ok: true, value: score };
    } catch (err) {
      if (isRetryable(err) || signal.aborted || !(err instanceof InferenceError)) throw err;
      return { ok: false, reason: `${err.code}: ${errorMessage(err)}` };
    }
  }

  private async post(record: RewardInput, signal: AbortSignal): Promise<number> {
    const { url, body } = requestFor(this.cfg, record);
    let status: number;
    let text: string;
    try {
      const res = await request(url, {
        method: 'POST',
        headers: this.headers,
        body: JSON.stringify(body),
        dispatcher: this.agent,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.cfg.timeoutMs)]),
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      if (signal.aborted) throw err;
      const code = (err as { code?: string }).code ?? '';
      const timedOut = (err as Error).name === 'TimeoutError' || code.endsWith('_TIMEOUT');
      if (timedOut) throw new InferenceError('INFERENCE_TIMEOUT', `reward model at ${url} did not answer within ${this.cfg.timeoutMs} ms`, { retryable: true, cause: err });
      throw new InferenceError('INFERENCE_CONNECTION', `cannot reach the reward model at ${url}: ${errorMessage(err)}`, { retryable: CONNECTION_CODES.has(code), cause: err, details: { code } });
    }
    if (status < 200 || status >= 300) {
      const retryable = status === 408 || status === 429 || status >= 500;
      throw new InferenceError('INFERENCE_HTTP', `reward model at ${url} answered HTTP ${status}: ${text.slice(0, 300)}`, { retryable, details: { status } });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new InferenceError('INFERENCE_BAD_RESPONSE', `reward model at ${url} answered with non-JSON: ${text.slice(0, 200)}`);
    }
    const parsed = RESPONSES[this.cfg.api].safeParse(json);
    if (!parsed.success) {
      throw new InferenceError('INFERENCE_BAD_RESPONSE', `reward model at ${url} answered in an unexpected shape for api ${this.cfg.api}: ${z.prettifyError(parsed.error).replaceAll('\n', ' ')}`);
    }
    return parsed.data;
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}
