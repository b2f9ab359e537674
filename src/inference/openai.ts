import { Pool } from 'undici';
import pLimit, { type LimitFunction } from 'p-limit';
import { InferenceError, errorMessage } from '../core/errors.js';
import { sleep, withRetry } from '../core/retry.js';
import { scrubSecrets, type Logger } from '../core/logger.js';
import type { BackendHealth, ChatRequest, Completion, CompletionRequest, InferenceBackend, Sampling } from './backend.js';

/** The server behind an OpenAI-compatible URL; decides which non-standard request fields are sent. */
export type OpenAIServer = 'vllm' | 'sglang' | 'llamacpp' | 'tgi' | 'generic';

export interface OpenAIBackendOptions {
  /** Backend name from the topology (used in the id and logs). */
  name: string;
  /** e.g. `http://gpu-1:8000/v1`; several URLs serving the same model are balanced (least in flight). */
  baseUrls: string[];
  model: string;
  server: OpenAIServer;
  /** Sent as `Authorization: Bearer`; never logged, scrubbed from error messages. */
  apiKey?: string;
  /** Requests in flight at once across all URLs. */
  maxConcurrency: number;
  /** Open connections per URL (default: maxConcurrency). */
  connectionsPerUrl?: number;
  /** Per attempt, from sending the request to the end of the response body. */
  timeoutMs: number;
  connectTimeoutMs?: number;
  /** Attempts after the first on retryable errors (429, 5xx, timeouts, connection errors). */
  retries: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Longest Retry-After honoured. */
  maxRetryAfterMs?: number;
  /** How long a URL that failed with a connection error, timeout or 5xx is skipped while others are up. */
  cooldownMs?: number;
  /** Whether the server returns `n` choices per request; default: all but llama.cpp servers do. */
  supportsN?: boolean;
  /** BOS strings a prompt may start with; the server must not add another (default Llama-3, Gemma, SentencePiece). */
  bosTokens?: string[];
  /**
   * How a JSON schema is sent: OpenAI `response_format` (vLLM >= 0.6, SGLang, llama.cpp) or vLLM's older
   * `guided_json` extra field. Default response_format.
   */
  jsonSchemaField?: 'response_format' | 'guided_json';
  /** Extra fields merged into every request body (server-specific options). */
  extraBody?: Record<string, unknown>;
  logger: Logger;
}

const DEFAULT_BOS_TOKENS = ['<|begin_of_text|>', '<bos>', '<s>'];
const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED',
]);
const TIMEOUT_ERROR_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

interface Endpoint {
  url: string;
  origin: string;
  pathPrefix: string;
  pool: Pool;
  inFlight: number;
  consecutiveFailures: number;
  downUntil: number;
}

interface WireChoice {
  index?: number;
  text?: string;
  message?: { content?: string | null; reasoning_content?: string | null; reasoning?: string | null };
  finish_reason?: string | null;
}

interface WireResponse {
  choices?: WireChoice[];
  usage?: { completion_tokens?: number; prompt_tokens?: number };
}

/** Any OpenAI-compatible server (vLLM first): raw `/completions` for pre-queries, `/chat/completions` for turns. */
export class OpenAIBackend implements InferenceBackend {
  readonly id: string;
  readonly model: string;
  readonly concurrency: number;
  private readonly endpoints: Endpoint[];
  private readonly limit: LimitFunction;
  private readonly log: Logger;
  private readonly supportsN: boolean;
  private readonly bosTokens: string[];
  private nextIndex = 0;
  private closed = false;

  constructor(private readonly opts: OpenAIBackendOptions) {
    if (opts.baseUrls.length === 0) throw new TypeError('OpenAIBackend needs at least one base URL');
    this.id = `openai:${opts.model}`;
    this.concurrency = opts.maxConcurrency;
    this.model = opts.model;
    this.limit = pLimit(opts.maxConcurrency);
    this.supportsN = opts.supportsN ?? opts.server !== 'llamacpp';
    this.bosTokens = opts.bosTokens ?? DEFAULT_BOS_TOKENS;
    this.log = opts.logger.child({ backend: opts.name, server: opts.server, model: opts.model });
    this.endpoints = opts.baseUrls.map((raw) => {
      const url = new URL(raw.replace(/\/+$/, ''));
      return {
        url: `${url.origin}${url.pathname}`,
        origin: url.origin,
        pathPrefix: url.pathname === '/' ? '' : url.pathname,
        pool: new Pool(url.origin, {
          connections: opts.connectionsPerUrl ?? opts.maxConcurrency,
          // The per-attempt AbortSignal fires first; these only guard against a stuck socket.
          headersTimeout: opts.timeoutMs + 5_000,
          bodyTimeout: opts.timeoutMs + 5_000,
          connectTimeout: opts.connectTimeoutMs ?? 10_000,
          keepAliveTimeout: 30_000,
        }),
        inFlight: 0,
        consecutiveFailures: 0,
        downUntil: 0,
      };
    });
  }

  async complete(req: CompletionRequest): Promise<Completion[]> {
    const { prompt, bosHandled } = this.prepareBos(req.prompt);
    const body: Record<string, unknown> = { prompt, ...this.samplingFields(req) };
    if (this.opts.server === 'vllm') {
      body.skip_special_tokens = true;
      if (bosHandled) body.add_special_tokens = false;
    }
    if (req.stopTokenIds?.length && (this.opts.server === 'vllm' || this.opts.server === 'sglang')) {
      body.stop_token_ids = req.stopTokenIds;
    }
    // The OpenAI API has no first-token-only bias: the ban holds for every token of the sample.
    if (req.firstTokenBans?.length) body.logit_bias = Object.fromEntries(req.firstTokenBans.map((id) => [String(id), -100]));
    return this.generate('/completions', body, req);
  }

  async chat(req: ChatRequest): Promise<Completion[]> {
    const body: Record<string, unknown> = { messages: req.messages, ...this.samplingFields(req) };
    if (this.opts.server === 'vllm') body.skip_special_tokens = true;
    return this.generate('/chat/completions', body, req);
  }

  health(): BackendHealth {
    if (this.closed) return 'closed';
    const now = Date.now();
    const down = this.endpoints.filter((e) => e.downUntil > now).length;
    return down === 0 ? 'ok' : down === this.endpoints.length ? 'down' : 'degraded';
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.endpoints.map((e) => e.pool.close()));
  }

  /**
   * vLLM adds a BOS by default (add_special_tokens), so a template that starts with one would get two:
   * vLLM is told not to add it; other servers get the prompt without it.
   */
  private prepareBos(prompt: string): { prompt: string; bosHandled: boolean } {
    const bos = this.bosTokens.find((b) => prompt.startsWith(b));
    if (bos === undefined) return { prompt, bosHandled: false };
    return this.opts.server === 'vllm' ? { prompt, bosHandled: true } : { prompt: prompt.slice(bos.length), bosHandled: true };
  }

  private samplingFields(req: Sampling & { stop?: string[]; jsonSchema?: Record<string, unknown> }): Record<string, unknown> {
    const body: Record<string, unknown> = {
      model: this.opts.model,
      temperature: req.temperature,
      top_p: req.topP,
      // Always sent: vLLM's default is 16.
      max_tokens: req.maxTokens,
    };
    if (req.seed !== undefined) body.seed = req.seed;
    if (req.stop?.length) body.stop = req.stop;
    if (req.repetitionPenalty !== undefined && req.repetitionPenalty !== 1) {
      if (this.opts.server === 'vllm' || this.opts.server === 'sglang') body.repetition_penalty = req.repetitionPenalty;
      else if (this.opts.server === 'llamacpp') body.repeat_penalty = req.repetitionPenalty;
    }
    if (req.jsonSchema) {
      if (this.opts.jsonSchemaField === 'guided_json') body.guided_json = req.jsonSchema;
      else body.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: req.jsonSchema, strict: true } };
    }
    return { ...body, ...this.opts.extraBody };
  }

  /** Runs `n` samples: one request with `n`, or several when the server returns fewer choices than asked. */
  private async generate(path: string, body: Record<string, unknown>, req: { n?: number; seed?: number; signal?: AbortSignal }): Promise<Completion[]> {
    const n = req.n ?? 1;
    if (n === 1 || this.supportsN) {
      const first = withSeed(await this.request(path, { ...body, n }, req.signal), req.seed);
      if (first.length >= n) return first.slice(0, n);
      const rest = await this.singles(path, body, n - first.length, first.length, req);
      return [...first, ...rest];
    }
    return this.singles(path, body, n, 0, req);
  }

  private async singles(path: string, body: Record<string, unknown>, count: number, offset: number, req: { seed?: number; signal?: AbortSignal }): Promise<Completion[]> {
    const parts = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        // Distinct seeds, or the samples would all be the same.
        this.request(path, { ...body, n: 1, ...(req.seed === undefined ? {} : { seed: req.seed + offset + i }) }, req.signal).then((c) =>
          withSeed(c, req.seed === undefined ? undefined : req.seed + offset + i),
        ),
      ),
    );
    return parts.flat();
  }

  /** One logical request, retried on retryable errors; Retry-After is honoured on top of the backoff. */
  private async request(path: string, body: Record<string, unknown>, signal: AbortSignal | undefined): Promise<Completion[]> {
    let waitMore = 0;
    let avoid: Endpoint | undefined;
    return withRetry(
      async () => {
        if (waitMore > 0) await sleep(waitMore, signal);
        return this.limit(async () => {
          const endpoint = this.pickEndpoint(avoid);
          try {
            return await this.attempt(endpoint, path, body, signal);
          } catch (err) {
            avoid = endpoint;
            throw err;
          }
        });
      },
      {
        attempts: this.opts.retries + 1,
        initialDelayMs: this.opts.initialBackoffMs ?? 500,
        maxDelayMs: this.opts.maxBackoffMs ?? 30_000,
        ...(signal ? { signal } : {}),
        onRetry: (err, attempt, delayMs) => {
          const retryAfterMs = err instanceof InferenceError ? (err.details?.retryAfterMs as number | undefined) : undefined;
          waitMore = retryAfterMs === undefined ? 0 : Math.max(0, retryAfterMs - delayMs);
          this.log.warn(
            { attempt, delayMs: delayMs + waitMore, code: err instanceof InferenceError ? err.code : undefined, err: errorMessage(err) },
            'inference request failed; retrying',
          );
        },
      },
    );
  }

  /** Least requests in flight among URLs not cooling down; ties go round-robin. */
  private pickEndpoint(avoid: Endpoint | undefined): Endpoint {
    const now = Date.now();
    const up = this.endpoints.filter((e) => e.downUntil <= now);
    let candidates = up.length > 0 ? up : [...this.endpoints].sort((a, b) => a.downUntil - b.downUntil).slice(0, 1);
    if (avoid && candidates.length > 1) candidates = candidates.filter((e) => e !== avoid);
    const start = this.nextIndex++;
    let best: Endpoint | undefined;
    for (let i = 0; i < candidates.length; i++) {
      const e = candidates[(start + i) % candidates.length]!;
      if (!best || e.inFlight < best.inFlight) best = e;
    }
    return best!;
  }

  private async attempt(endpoint: Endpoint, path: string, body: Record<string, unknown>, signal: AbortSignal | undefined): Promise<Completion[]> {
    if (this.closed) throw new InferenceError('INFERENCE_UNAVAILABLE', `backend ${this.opts.name} is closed`);
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const url = endpoint.url + path;
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;
    endpoint.inFlight++;
    try {
      const res = await endpoint.pool.request({
        method: 'POST',
        path: endpoint.pathPrefix + path,
        headers,
        body: JSON.stringify(body),
        signal: combined,
      });
      const text = await res.body.text();
      if (res.statusCode >= 400) throw this.httpError(url, res.statusCode, text, res.headers['retry-after']);
      const completions = this.parse(url, text, path === '/chat/completions');
      endpoint.consecutiveFailures = 0;
      endpoint.downUntil = 0;
      return completions;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const error = this.classify(err, url, timeout.aborted);
      if (error.retryable && error.code !== 'INFERENCE_BAD_RESPONSE' && error.details?.status !== 429) this.markFailure(endpoint);
      throw error;
    } finally {
      endpoint.inFlight--;
    }
  }

  private markFailure(endpoint: Endpoint): void {
    endpoint.consecutiveFailures++;
    const cooldown = this.opts.cooldownMs ?? 5_000;
    endpoint.downUntil = Date.now() + Math.min(cooldown * 2 ** (endpoint.consecutiveFailures - 1), cooldown * 12);
  }

  private classify(err: unknown, url: string, timedOut: boolean): InferenceError {
    if (err instanceof InferenceError) return err;
    const code = (err as { code?: string } | null)?.code;
    const name = (err as { name?: string } | null)?.name;
    const message = this.scrub(errorMessage(err));
    if (timedOut || name === 'TimeoutError' || (code !== undefined && TIMEOUT_ERROR_CODES.has(code))) {
      return new InferenceError('INFERENCE_TIMEOUT', `${url}: no complete response within ${this.opts.timeoutMs} ms; the server may be overloaded (raise timeoutMs or lower maxConcurrency)`, {
        retryable: true,
        details: { url, timeoutMs: this.opts.timeoutMs },
      });
    }
    if ((code !== undefined && CONNECTION_ERROR_CODES.has(code)) || name === 'SocketError') {
      return new InferenceError('INFERENCE_CONNECTION', `${url}: connection failed (${code ?? name}: ${message}); check that the server is running`, {
        retryable: true,
        details: { url, errorCode: code },
      });
    }
    return new InferenceError('INFERENCE_FAILED', `${url}: ${message}`, { retryable: false, details: { url, errorCode: code } });
  }

  private httpError(url: string, status: number, text: string, retryAfterHeader: string | string[] | undefined): InferenceError {
    const serverMessage = this.scrub(extractErrorMessage(text)).slice(0, 1_000);
    const retryable = status === 429 || status === 408 || status >= 500;
    const details: Record<string, unknown> = { url, status };
    const retryAfterMs = parseRetryAfter(Array.isArray(retryAfterHeader) ? retryAfterHeader[0] : retryAfterHeader);
    if (retryAfterMs !== undefined) details.retryAfterMs = Math.min(retryAfterMs, this.opts.maxRetryAfterMs ?? 60_000);
    const hint = status === 401 || status === 403 ? ' (check the API key)' : status === 404 ? ' (check baseUrl and model)' : '';
    return new InferenceError('INFERENCE_HTTP', `${url}: HTTP ${status}${hint}: ${serverMessage}`, { retryable, details });
  }

  private parse(url: string, text: string, chat: boolean): Completion[] {
    let data: WireResponse;
    try {
      data = JSON.parse(text) as WireResponse;
    } catch {
      throw new InferenceError('INFERENCE_BAD_RESPONSE', `${url}: response is not JSON: ${this.scrub(text.slice(0, 200))}`, { retryable: true, details: { url } });
    }
    const choices = Array.isArray(data.choices) ? [...data.choices] : undefined;
    if (!choices || choices.length === 0) {
      throw new InferenceError('INFERENCE_BAD_RESPONSE', `${url}: response has no choices`, { retryable: true, details: { url } });
    }
    choices.sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
    const texts = choices.map((c) => (chat ? c.message?.content : c.text) ?? '');
    const tokens = splitTokens(data.usage?.completion_tokens, texts);
    return choices.map((c, i) => {
      // vLLM's reasoning parsers answer with reasoning_content; newer servers call it reasoning.
      const reasoning = chat ? (c.message?.reasoning_content ?? c.message?.reasoning) : undefined;
      return {
        text: texts[i]!,
        finishReason: c.finish_reason === 'length' ? 'length' : 'stop',
        tokens: tokens[i]!,
        ...(typeof reasoning === 'string' ? { reasoning } : {}),
        // One prompt evaluation for all n choices: counted on the first.
        ...(data.usage?.prompt_tokens === undefined ? {} : { promptTokens: i === 0 ? data.usage.prompt_tokens : 0 }),
      };
    });
  }

  private scrub(text: string): string {
    return scrubSecrets(text, [this.opts.apiKey]);
  }
}

/** Completions labelled with the seed their request sent (the `n` choices of one request share it). */
function withSeed(completions: Completion[], seed: number | undefined): Completion[] {
  return seed === undefined ? completions : completions.map((c) => ({ ...c, seed }));
}

/** The server's own error text from an OpenAI-style `{error: {message}}`, a `{detail}` or `{message}` body, or the raw text. */
export function extractErrorMessage(text: string): string {
  try {
    const data = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown; detail?: unknown };
    if (typeof data.error === 'string') return data.error;
    if (data.error && typeof data.error.message === 'string') return data.error.message;
    if (typeof data.message === 'string') return data.message;
    if (data.detail !== undefined) return typeof data.detail === 'string' ? data.detail : JSON.stringify(data.detail);
  } catch {
    // Not JSON: the text itself is the message.
  }
  return text.trim() || '(empty body)';
}

/** Retry-After in seconds or as an HTTP date, in ms; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1_000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * Per-choice generated tokens. Servers report one total for all `n` choices: it is split in proportion to
 * each text's length (largest remainder, so the parts add up). Without usage, about 4 characters a token.
 */
export function splitTokens(total: number | undefined, texts: string[]): number[] {
  if (total === undefined || !Number.isFinite(total)) return texts.map((t) => Math.ceil(t.length / 4));
  if (texts.length === 1) return [total];
  const weights = texts.map((t) => t.length + 1);
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (total * w) / sum);
  const parts = exact.map(Math.floor);
  let left = total - parts.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0]);
  for (const [, i] of order) {
    if (left-- <= 0) break;
    parts[i]!++;
  }
  return parts;
}
