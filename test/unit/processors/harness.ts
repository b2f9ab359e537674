import { pino } from 'pino';
import type { Embedder } from '../../../src/embedding/embedder.js';
import type { ChatRequest, Completion, InferenceBackend } from '../../../src/inference/backend.js';
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

export function deps(resources: { backend?: InferenceBackend; embedder?: Embedder } = {}): StageDeps {
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
  };
}

/** A chat backend whose answers come from `answer`, which sees every request; records the requests. */
export class ScriptedBackend implements InferenceBackend {
  readonly id = 'scripted:test';
  readonly model = 'test';
  readonly requests: ChatRequest[] = [];

  constructor(private readonly answer: (req: ChatRequest, call: number) => string | Completion | Error) {}

  async complete(): Promise<Completion[]> {
    throw new Error('not used');
  }

  async chat(req: ChatRequest): Promise<Completion[]> {
    this.requests.push(req);
    const out = this.answer(req, this.requests.length - 1);
    if (out instanceof Error) throw out;
    return [typeof out === 'string' ? { text: out, finishReason: 'stop', tokens: 1 } : out];
  }

  async close(): Promise<void> {}
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
