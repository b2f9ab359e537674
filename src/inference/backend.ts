import type { ModelChatTemplate } from './template-derive.js';

/** Sampling settings shared by every generation call. */
export interface Sampling {
  temperature: number;
  topP: number;
  maxTokens: number;
  repetitionPenalty?: number;
  seed?: number;
}

export interface CompletionRequest extends Sampling {
  /** Raw prompt text; special-token strings in it (e.g. `<|im_start|>`) are sent as special tokens. */
  prompt: string;
  /** Number of samples for this prompt. */
  n?: number;
  stop?: string[];
  stopTokenIds?: number[];
  /**
   * Token ids the first generated token must not be (e.g. markdown headers opening an instruction). llama.cpp
   * bans them for the first token only; OpenAI-compatible servers get a `logit_bias` that holds for every token.
   */
  firstTokenBans?: number[];
  /** Constrain the output to JSON matching this schema, where the backend supports it. */
  jsonSchema?: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatRequest extends Sampling {
  messages: ChatMessage[];
  n?: number;
  stop?: string[];
  jsonSchema?: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface Completion {
  text: string;
  /** 'stop': ended at a stop string/token; 'length': hit maxTokens (truncated). */
  finishReason: 'stop' | 'length';
  /** Tokens generated. */
  tokens: number;
  /** The sampling seed sent for this sample, when one was. */
  seed?: number;
  /** A reasoning model's thinking part, when the server returns it apart from the text (vLLM `reasoning_content`). */
  reasoning?: string;
  /**
   * Prompt tokens the backend evaluated for this completion, when it reports them; siblings of one request
   * that shared a prompt evaluation carry it on the first only, so a sum over completions is the true total.
   */
  promptTokens?: number;
}

/**
 * How a backend is doing, for a circuit breaker or a metrics gauge: 'degraded' when some of its endpoints
 * are failing, 'down' when all are (requests are still attempted), 'closed' after close().
 */
export type BackendHealth = 'ok' | 'degraded' | 'down' | 'closed';

/** A chat model reachable for raw completions and chat turns. Errors are InferenceError with a code. */
export interface InferenceBackend {
  /** e.g. `llamacpp:SmolLM2-135M-Instruct` or `openai:meta-llama/Meta-Llama-3-8B-Instruct`. */
  readonly id: string;
  /** Model name recorded in output records. */
  readonly model: string;
  /** Requests this backend runs at once (what keeps its server's batch full). */
  readonly concurrency?: number;
  complete(req: CompletionRequest): Promise<Completion[]>;
  chat(req: ChatRequest): Promise<Completion[]>;
  close(): Promise<void>;
  health?(): BackendHealth;
  /** The model's own chat template, where the backend can read it (a GGUF's metadata), for `template: auto`. */
  modelChatTemplate?(): Promise<ModelChatTemplate | undefined>;
}
