import { pino } from 'pino';
import type { Embedder } from '../../../src/embedding/embedder.js';
import type { ChatRequest, Completion, CompletionRequest, InferenceBackend } from '../../../src/inference/backend.js';
import type { RewardModel } from '../../../src/inference/reward.js';
import type { InputRecord, StageContext, StageDeps } from '../../../src/processors/stage.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { makeConversation } from '../../support/records.js';

export function stageContext(signal: AbortSignal = new AbortController().signal): StageContext {
  return { logger: pino({ level: 'silent' }), signal, heartbeat: async () => {} };
}

/** Input records as the runner hands them over: one partition, offsets from `firstOffset`. */
export function inputs<T extends { uuid: string }>(values: T[], firstOffset = 0): InputRecord<T>[] {
  return values.map((value, i) => ({ value, key: value.uuid, headers: {}, topic: 'in', partition: 0, offset: String(firstOffset + i), timestamp: '0' }));
}

export function conversations(instructions: string[]): Conversation[] {
  return instructions.map((text, i) => makeConversation(i, text));
}

export function deps(resources: { backend?: InferenceBackend; embedder?: Embedder; reward?: RewardModel } = {}): StageDeps {
  return {
    stageName: 'test',
    logger: pino({ level: 'silent' }),
    backend: () => {
      if (!resources.backend) throw new Error('no backend in this test');
      return resources.backend;
    },
    embedder: () => {
      if (!resources.embedder) throw new Error('no embedder in this test');
      return resources.embedder;
    },
    reward: () => {
      if (!resources.reward) throw new Error('no reward model in this test');
      return resources.reward;
    },
  };
}

/** One scripted answer: a text or a completion is one sample, an array is every sample, an Error is thrown. */
export type ScriptedAnswer = string | Completion | Completion[] | Error;

/**
 * A backend whose answers come from `answer`, which sees every request (completion or chat) and its call
 * number; records the requests. `R` is the request kind the test drives, so it can read their fields.
 */
export class ScriptedBackend<R extends CompletionRequest | ChatRequest = ChatRequest> implements InferenceBackend {
  readonly id = 'fake:model';
  readonly model = 'fake-model';
  readonly requests: R[] = [];

  constructor(private readonly answer: (req: R, call: number) => ScriptedAnswer) {}

  async complete(req: CompletionRequest): Promise<Completion[]> {
    return this.reply(req as R);
  }

  async chat(req: ChatRequest): Promise<Completion[]> {
    return this.reply(req as R);
  }

  async close(): Promise<void> {}

  private reply(req: R): Completion[] {
    this.requests.push(req);
    const out = this.answer(req, this.requests.length - 1);
    if (out instanceof Error) throw out;
    if (Array.isArray(out)) return out;
    return [typeof out === 'string' ? { text: out, finishReason: 'stop', tokens: 1 } : out];
  }
}

/** Emitted values of the main port, one per input; fails on any other outcome. */
export function mainValues<T>(outcomes: { kind: string; records?: { value: unknown; port?: string }[] }[]): T[] {
  return outcomes.map((o) => {
    if (o.kind !== 'emit') throw new Error(`expected emit, got ${JSON.stringify(o)}`);
    const main = o.records!.filter((r) => (r.port ?? 'out') === 'out');
    if (main.length !== 1) throw new Error(`expected one main output, got ${main.length}`);
    return main[0]!.value as T;
  });
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A unit vector of `dimensions` random components. */
export function randomUnitVector(random: () => number, dimensions: number): Float32Array {
  const v = new Float32Array(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    v[i] = random() * 2 - 1;
    norm += v[i]! * v[i]!;
  }
  norm = Math.sqrt(norm);
  for (let i = 0; i < dimensions; i++) v[i] = v[i]! / norm;
  return v;
}

/**
 * Bag-of-words embedder: each lower-cased word adds a fixed random direction, so texts sharing most words
 * are close and identical texts coincide. Deterministic, no model.
 */
export class HashingEmbedder implements Embedder {
  readonly model = 'test/hashing-bow';
  readonly calls: string[][] = [];

  constructor(readonly dimensions = 32) {}

  async embed(texts: string[]): Promise<Float32Array[]> {
    this.calls.push(texts);
    return texts.map((text) => {
      const sum = new Float32Array(this.dimensions);
      for (const word of text.toLowerCase().match(/[a-z0-9]+/g) ?? []) {
        let h = 2166136261;
        for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 16777619);
        const dir = randomUnitVector(seededRandom(h), this.dimensions);
        for (let i = 0; i < this.dimensions; i++) sum[i] = sum[i]! + dir[i]!;
      }
      const norm = Math.hypot(...sum) || 1;
      return sum.map((x) => x / norm);
    });
  }

  async close(): Promise<void> {}
}
