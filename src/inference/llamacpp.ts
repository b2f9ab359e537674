import { basename } from 'node:path';
import { access } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import {
  getLlama,
  LlamaCompletion,
  LlamaLogLevel,
  type GbnfJsonSchema,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaGrammar,
  type LlamaModel,
  type Token,
  TokenBias,
} from 'node-llama-cpp';
import { InferenceError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { BackendHealth, ChatRequest, Completion, CompletionRequest, InferenceBackend } from './backend.js';
import { deriveTemplate, ggufChatTemplate, type GgufTokenizerMetadata, type ModelChatTemplate } from './template-derive.js';
import { detectFamily, familyTemplate, type ChatTemplate, type TemplateFamily } from './templates.js';

export type LlamaGpu = 'auto' | false | 'cuda';

export interface LlamaCppBackendOptions {
  name: string;
  /** Path of a GGUF chat model. */
  modelPath: string;
  /** Model name for output records; default: the GGUF file name without extension. */
  model?: string;
  /** Chat format for chat(); default: detected from the GGUF's chat template. */
  family?: TemplateFamily;
  /** A resolved (e.g. custom) template; wins over family. */
  template?: ChatTemplate;
  /** Tokens per sequence (prompt + generation). */
  contextSize: number;
  /** Sequences generated in parallel in one batch; each request holds one while it runs. */
  sequences: number;
  gpu: LlamaGpu;
  /**
   * CPU threads. Default: cores - 1 (at least 1). llama.cpp's threads spin while they wait, so using every
   * core on a busy machine (Kafka, other stages) is several times slower than leaving one free.
   */
  threads?: number;
  /** Tokens evaluated per batch (default: node-llama-cpp's). */
  batchSize?: number;
  logger: Logger;
}

interface SharedLlama {
  llama: Promise<Llama>;
  users: number;
}

/** One native runtime per (gpu, threads) in the process, disposed with its last backend. */
const runtimes = new Map<string, SharedLlama>();

async function acquireLlama(gpu: LlamaGpu, threads: number): Promise<{ llama: Llama; release: () => Promise<void> }> {
  const key = `${String(gpu)}:${threads}`;
  let shared = runtimes.get(key);
  if (!shared) {
    shared = {
      llama: getLlama({ build: 'never', gpu, logLevel: LlamaLogLevel.error, maxThreads: threads }),
      users: 0,
    };
    runtimes.set(key, shared);
  }
  shared.users++;
  const entry = shared;
  try {
    const llama = await entry.llama;
    return {
      llama,
      release: async () => {
        if (--entry.users > 0) return;
        runtimes.delete(key);
        await llama.dispose();
      },
    };
  } catch (err) {
    entry.users--;
    runtimes.delete(key);
    throw err;
  }
}

/** Hands out free sequences; callers wait (abortably) when all are busy. */
class SequencePool {
  private readonly free: LlamaContextSequence[];
  private readonly waiters: { resolve: (s: LlamaContextSequence) => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];
  private readonly completions = new Map<LlamaContextSequence, LlamaCompletion>();

  constructor(sequences: LlamaContextSequence[]) {
    this.free = [...sequences];
    for (const s of sequences) this.completions.set(s, new LlamaCompletion({ contextSequence: s }));
  }

  get busy(): number {
    return this.completions.size - this.free.length;
  }

  async acquire(signal?: AbortSignal): Promise<{ sequence: LlamaContextSequence; completion: LlamaCompletion }> {
    signal?.throwIfAborted();
    const sequence =
      this.free.pop() ??
      (await new Promise<LlamaContextSequence>((resolve, reject) => {
        const waiter: (typeof this.waiters)[number] = { resolve, reject, ...(signal ? { signal } : {}) };
        if (signal) {
          waiter.onAbort = () => {
            this.waiters.splice(this.waiters.indexOf(waiter), 1);
            reject(signal.reason);
          };
          signal.addEventListener('abort', waiter.onAbort, { once: true });
        }
        this.waiters.push(waiter);
      }));
    return { sequence, completion: this.completions.get(sequence)! };
  }

  release(sequence: LlamaContextSequence): void {
    const waiter = this.waiters.shift();
    if (!waiter) {
      this.free.push(sequence);
      return;
    }
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
    waiter.resolve(sequence);
  }

  rejectWaiters(err: unknown): void {
    for (const w of this.waiters.splice(0)) {
      if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
      w.reject(err);
    }
  }

  dispose(): void {
    for (const c of this.completions.values()) c.dispose();
  }
}

/** A GGUF chat model run in-process by llama.cpp (node-llama-cpp): the embedded default backend. */
export class LlamaCppBackend implements InferenceBackend {
  readonly id: string;
  readonly model: string;
  readonly concurrency: number;
  /** Chat format used by chat(); undefined when neither given nor detectable. */
  readonly template: ChatTemplate | undefined;
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private closed = false;

  private constructor(
    private readonly opts: LlamaCppBackendOptions,
    private readonly llama: Llama,
    private readonly releaseLlama: () => Promise<void>,
    private readonly llamaModel: LlamaModel,
    private readonly context: LlamaContext,
    private readonly pool: SequencePool,
  ) {
    this.model = opts.model ?? basename(opts.modelPath).replace(/\.gguf$/i, '');
    this.id = `llamacpp:${this.model}`;
    this.concurrency = opts.sequences;
    const detected = opts.family ?? detectFamily(llamaModel.fileInfo.metadata?.tokenizer?.chat_template ?? '') ?? detectFamily(this.model);
    this.template = opts.template ?? (detected ? familyTemplate(detected) : this.derivedTemplate());
  }

  /** The chat format derived from the GGUF's own chat template, for a model no registry family matches. */
  private derivedTemplate(): ChatTemplate | undefined {
    const source = ggufChatTemplate(this.llamaModel.fileInfo.metadata?.tokenizer as GgufTokenizerMetadata | undefined, this.id, this.model);
    try {
      return source && deriveTemplate(source);
    } catch {
      // chat() then says to set the backend's family.
      return undefined;
    }
  }

  /** Loads the model and creates a context with `sequences` parallel sequences. */
  static async load(opts: LlamaCppBackendOptions): Promise<LlamaCppBackend> {
    const log = opts.logger.child({ backend: opts.name, model: basename(opts.modelPath) });
    try {
      await access(opts.modelPath);
    } catch {
      throw new InferenceError('INFERENCE_UNAVAILABLE', `GGUF model not found at ${opts.modelPath}; run scripts/fetch-models.sh or set modelPath`, {
        details: { modelPath: opts.modelPath },
      });
    }
    const t0 = Date.now();
    const threads = opts.threads ?? Math.max(1, availableParallelism() - 1);
    let runtime: { llama: Llama; release: () => Promise<void> };
    try {
      runtime = await acquireLlama(opts.gpu, threads);
    } catch (err) {
      throw new InferenceError('INFERENCE_UNAVAILABLE', `cannot load llama.cpp (gpu: ${String(opts.gpu)}): ${errorMessage(err)}; try gpu: false`, { cause: err });
    }
    const { llama } = runtime;
    let model: LlamaModel | undefined;
    try {
      model = await llama.loadModel({ modelPath: opts.modelPath });
      const context = await model.createContext({
        sequences: opts.sequences,
        contextSize: opts.contextSize,
        threads,
        ...(opts.batchSize === undefined ? {} : { batchSize: opts.batchSize }),
      });
      const sequences = Array.from({ length: opts.sequences }, () => context.getSequence());
      const backend = new LlamaCppBackend(opts, llama, runtime.release, model, context, new SequencePool(sequences));
      log.info(
        { gpu: llama.gpu, threads, sequences: opts.sequences, contextSize: context.contextSize, template: backend.template?.name, loadMs: Date.now() - t0 },
        'llama.cpp model loaded',
      );
      return backend;
    } catch (err) {
      await model?.dispose();
      await runtime.release();
      throw new InferenceError('INFERENCE_UNAVAILABLE', `cannot load ${opts.modelPath}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Token ids of a text, with special-token strings (e.g. `<|im_start|>`) parsed as special tokens. */
  tokenize(text: string): Token[] {
    return this.llamaModel.tokenize(text, true);
  }

  async complete(req: CompletionRequest): Promise<Completion[]> {
    this.ensureOpen();
    const tokens = this.promptTokens(req.prompt);
    const grammar = req.jsonSchema ? await this.grammar(req.jsonSchema) : undefined;
    const stopTriggers = this.stopTriggers(req.stop ?? [], req.stopTokenIds ?? []);
    const n = req.n ?? 1;
    return Promise.all(
      Array.from({ length: n }, (_, i) => this.sample(tokens, req, stopTriggers, grammar, req.seed === undefined ? undefined : req.seed + i)),
    );
  }

  async chat(req: ChatRequest): Promise<Completion[]> {
    const template = this.template;
    if (!template) {
      throw new InferenceError('INFERENCE_FAILED', `${this.id}: no chat template detected in the GGUF; set the backend's family`, { details: { backend: this.opts.name } });
    }
    return this.complete({
      ...req,
      prompt: template.formatConversation(req.messages, { addGenerationPrompt: true }),
      stop: req.stop ?? [...template.stop],
      stopTokenIds: [...template.stopTokenIds],
    });
  }

  health(): BackendHealth {
    return this.closed ? 'closed' : 'ok';
  }

  async modelChatTemplate(): Promise<ModelChatTemplate | undefined> {
    return ggufChatTemplate(this.llamaModel.fileInfo.metadata?.tokenizer as GgufTokenizerMetadata | undefined, this.id, this.model);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closedError = new InferenceError('INFERENCE_UNAVAILABLE', `backend ${this.opts.name} is closed`);
    this.pool.rejectWaiters(closedError);
    this.pool.dispose();
    await this.context.dispose();
    await this.llamaModel.dispose();
    await this.releaseLlama();
  }

  /**
   * The prompt as tokens with special tokens parsed. node-llama-cpp prepends the BOS itself where the model
   * wants one, so a BOS the template wrote is dropped here rather than doubled.
   */
  private promptTokens(prompt: string): Token[] {
    const tokens = this.tokenize(prompt);
    const { bos, shouldPrependBosToken } = this.llamaModel.tokens;
    const withoutBos = shouldPrependBosToken && bos !== null && tokens[0] === bos ? tokens.slice(1) : tokens;
    if (withoutBos.length === 0) throw new InferenceError('INFERENCE_FAILED', `${this.id}: empty prompt`);
    // Leave room for the BOS and at least one generated token.
    if (withoutBos.length + 2 > this.context.contextSize) {
      throw new InferenceError('INFERENCE_FAILED', `${this.id}: prompt has ${withoutBos.length} tokens but the context holds ${this.context.contextSize}; raise contextSize`, {
        details: { promptTokens: withoutBos.length, contextSize: this.context.contextSize },
      });
    }
    return withoutBos;
  }

  /** Stop strings, plus each one that is a single special token as that token, plus the stop token ids. */
  private stopTriggers(stop: string[], stopTokenIds: number[]): (string | Token[])[] {
    const triggers: (string | Token[])[] = [...stop];
    for (const s of stop) {
      const ids = this.tokenize(s);
      if (ids.length === 1 && this.llamaModel.isSpecialToken(ids[0])) triggers.push([ids[0]!]);
    }
    for (const id of stopTokenIds) triggers.push([id as Token]);
    return triggers;
  }

  private grammar(schema: Record<string, unknown>): Promise<LlamaGrammar> {
    const key = JSON.stringify(schema);
    let grammar = this.grammars.get(key);
    if (!grammar) {
      // The schema comes from config as plain JSON; its static type cannot be the literal type the API infers.
      const create = this.llama.createGrammarForJsonSchema.bind(this.llama) as (s: GbnfJsonSchema) => Promise<LlamaGrammar>;
      grammar = create(schema as GbnfJsonSchema).catch((err: unknown) => {
        this.grammars.delete(key);
        throw new InferenceError('INFERENCE_FAILED', `${this.id}: JSON schema not supported by the grammar converter: ${errorMessage(err)}`, { cause: err });
      });
      this.grammars.set(key, grammar);
    }
    return grammar;
  }

  private async sample(
    tokens: Token[],
    req: CompletionRequest,
    stopTriggers: (string | Token[])[],
    grammar: LlamaGrammar | undefined,
    seed: number | undefined,
  ): Promise<Completion> {
    const { sequence, completion } = await this.pool.acquire(req.signal);
    try {
      this.ensureOpen();
      const before = sequence.tokenMeter.usedOutputTokens;
      const inputBefore = sequence.tokenMeter.usedInputTokens;
      const { response, metadata } = await completion.generateCompletionWithMeta(tokens, {
        maxTokens: req.maxTokens,
        temperature: req.temperature,
        topP: req.topP,
        // node-llama-cpp samples from the top 40 by default; Magpie's diversity needs the full distribution.
        topK: 0,
        ...(seed === undefined ? {} : { seed }),
        repeatPenalty: req.repetitionPenalty === undefined || req.repetitionPenalty === 1 ? false : { penalty: req.repetitionPenalty },
        ...(stopTriggers.length > 0 ? { customStopTriggers: stopTriggers } : {}),
        ...(grammar ? { grammar } : {}),
        ...(req.firstTokenBans?.length ? { tokenBias: this.firstTokenBias(req.firstTokenBans) } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
        // Stop at the context end ('length') instead of silently dropping the start of the prompt.
        disableContextShift: true,
        contextShiftSize: 1,
      });
      return {
        text: response,
        finishReason: metadata.stopReason === 'maxTokens' ? 'length' : 'stop',
        tokens: sequence.tokenMeter.usedOutputTokens - before,
        ...(seed === undefined ? {} : { seed }),
        promptTokens: sequence.tokenMeter.usedInputTokens - inputBefore,
      };
    } catch (err) {
      if (req.signal?.aborted) throw req.signal.reason;
      if (err instanceof InferenceError) throw err;
      if (this.closed) throw new InferenceError('INFERENCE_UNAVAILABLE', `backend ${this.opts.name} is closed`, { cause: err });
      throw new InferenceError('INFERENCE_FAILED', `${this.id}: generation failed: ${errorMessage(err)}`, { cause: err });
    } finally {
      this.pool.release(sequence);
    }
  }

  /** A bias node-llama-cpp asks for before each token: the bans for the first one, nothing after. */
  private firstTokenBias(ids: number[]): () => TokenBias {
    let first = true;
    return () => {
      const bias = new TokenBias(this.llamaModel.tokenizer);
      if (first) for (const id of ids) bias.set(id as Token, 'never');
      first = false;
      return bias;
    };
  }

  private ensureOpen(): void {
    if (this.closed) throw new InferenceError('INFERENCE_UNAVAILABLE', `backend ${this.opts.name} is closed`);
  }
}
