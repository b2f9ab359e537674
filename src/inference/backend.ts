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
}
