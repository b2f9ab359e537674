import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { InferenceError } from '../../../src/core/errors.js';
import type { Completion, CompletionRequest } from '../../../src/inference/backend.js';
import { InstructionGenerator } from '../../../src/processors/generate-instructions.js';
import { ResponseGenerator } from '../../../src/processors/generate-responses.js';
import type { Outcome, StageContext } from '../../../src/processors/stage.js';
import { generateInstructions } from '../../../src/processors/generate-instructions.js';
import { generateResponses } from '../../../src/processors/generate-responses.js';
import type { Conversation, Instruction } from '../../../src/serde/records.generated.js';
import { makeInstruction } from '../../support/records.js';
import { ScriptedBackend } from './harness.js';

const ctx = (): StageContext => ({ logger: pino({ level: 'silent' }), signal: new AbortController().signal, heartbeat: async () => undefined });

const ok = (text: string, tokens = 5): Completion => ({ text, finishReason: 'stop', tokens });

async function drain(gen: InstructionGenerator): Promise<Outcome<Instruction>[]> {
  const all: Outcome<Instruction>[] = [];
  for (;;) {
    const batch = await gen.next(100, ctx());
    if (batch.length === 0) return all;
    all.push(...batch);
  }
}

const instructionConfig = (extra: Record<string, unknown> = {}) =>
  generateInstructions.config.parse({ backend: 'b', template: 'chatml', count: 8, samplesPerRequest: 4, inFlight: 2, sampling: { maxTokens: 64, seed: 7 }, ...extra });

describe('InstructionGenerator (Magpie step 1)', () => {
  it('sends only the pre-query template with the family stop strings and n samples', async () => {
    const backend = new ScriptedBackend<CompletionRequest>((req) => Array.from({ length: req.n ?? 1 }, (_, i) => ok(` What is ${i} + ${i}? `)));
    const outcomes = await drain(new InstructionGenerator(backend, instructionConfig()));
    expect(backend.requests).toHaveLength(2);
    expect(backend.requests[0]).toMatchObject({ prompt: '<|im_start|>user\n', n: 4, temperature: 1, topP: 1, maxTokens: 64 });
    expect(backend.requests[0]!.stop).toContain('<|im_end|>');
    expect(new Set(backend.requests.map((r) => r.seed))).toEqual(new Set([7, 8]));
    expect(outcomes).toHaveLength(8);
    const first = outcomes[0]!;
    expect(first.kind).toBe('emit');
    const value = (first as { records: { value: Instruction }[] }).records[0]!.value;
    expect(value.instruction).toMatch(/^What is \d \+ \d\?$/);
    expect(value.gen_input_configs).toMatchObject({ temperature: 1, top_p: 1, max_tokens: 64, template_family: 'chatml', pre_query_template: '<|im_start|>user\n', input_generator: 'fake:model' });
    expect(value.model).toBe('fake-model');
  });

  it('rejects empty, truncated and template-leaking instructions with the rule', async () => {
    const texts: Completion[] = [ok('   '), { text: 'A cut off questi', finishReason: 'length', tokens: 64 }, ok('Hi<|im_start|>assistant\nHello'), ok('Name three rivers.')];
    const backend = new ScriptedBackend<CompletionRequest>(() => texts);
    const outcomes = await drain(new InstructionGenerator(backend, instructionConfig({ count: 4 })));
    expect(outcomes.map((o) => (o.kind === 'reject' ? o.rule : o.kind))).toEqual(['empty_instruction', 'truncated_instruction', 'template_leak', 'emit']);
    const leak = outcomes[2] as { reason: string; record: Instruction };
    expect(leak.reason).toContain('<|im_start|>');
    expect(leak.record.uuid).toMatch(/[0-9a-f-]{36}/);
  });

  it('puts a system-prompt variant before the user header', async () => {
    const backend = new ScriptedBackend<CompletionRequest>(() => [ok('Solve x + 1 = 2.')]);
    await drain(new InstructionGenerator(backend, instructionConfig({ count: 1, samplesPerRequest: 1, template: { family: 'chatml', systemPrompt: 'math' } })));
    expect(backend.requests[0]!.prompt).toMatch(/^<\|im_start\|>system\n.+<\|im_end\|>\n<\|im_start\|>user\n$/s);
  });

  it('retries a retryable backend failure and still produces the count', async () => {
    let failures = 0;
    const backend = new ScriptedBackend<CompletionRequest>((req) => (failures++ < 2 ? new InferenceError('INFERENCE_HTTP', '503', { retryable: true }) : Array.from({ length: req.n ?? 1 }, () => ok('Why is the sky blue?'))));
    const outcomes = await drain(new InstructionGenerator(backend, { ...instructionConfig({ count: 4, inFlight: 1 }) }));
    expect(outcomes.filter((o) => o.kind === 'emit')).toHaveLength(4);
  }, 20_000);
});

describe('ResponseGenerator (Magpie step 2 and multi-turn)', () => {
  const responseConfig = (extra: Record<string, unknown> = {}) => generateResponses.config.parse({ backend: 'b', template: 'chatml', sampling: { maxTokens: 32 }, ...extra });

  it('wraps the instruction in the full chat template and records the answer', async () => {
    const backend = new ScriptedBackend<CompletionRequest>(() => [ok(' Blue light scatters more. ', 6)]);
    const outcome = await new ResponseGenerator(backend, responseConfig()).answer(makeInstruction(1, 'Why is the sky blue?'), ctx());
    expect(backend.requests[0]!.prompt).toBe('<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n');
    expect(backend.requests[0]).toMatchObject({ temperature: 0, maxTokens: 32 });
    expect(outcome.kind).toBe('emit');
    const c = (outcome as { records: { value: Conversation }[] }).records[0]!.value;
    expect(c).toMatchObject({ instruction: 'Why is the sky blue?', response: 'Blue light scatters more.', response_tokens: 6, response_finish_reason: 'stop', instruction_length: 20 });
    expect(c.conversations).toEqual([{ from: 'human', value: 'Why is the sky blue?' }, { from: 'gpt', value: 'Blue light scatters more.' }]);
    expect(c.gen_input_configs).toEqual(makeInstruction(1).gen_input_configs);
  });

  it('lets the model write the follow-up user turn for multi-turn conversations', async () => {
    const backend = new ScriptedBackend<CompletionRequest>((req) => [ok(req.prompt.endsWith('<|im_start|>user\n') ? 'And why is it red at sunset?' : 'Because of scattering.')]);
    const outcome = await new ResponseGenerator(backend, responseConfig({ turns: 2 })).answer(makeInstruction(1, 'Why is the sky blue?'), ctx());
    const c = (outcome as { records: { value: Conversation }[] }).records[0]!.value;
    expect(c.conversations.map((t) => t.from)).toEqual(['human', 'gpt', 'human', 'gpt']);
    expect(c.conversations[2]!.value).toBe('And why is it red at sunset?');
    expect(backend.requests[1]!.prompt).toBe('<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\nBecause of scattering.<|im_end|>\n<|im_start|>user\n');
  });

  it('rejects oversized and empty instructions without inference, and empty answers with a rule', async () => {
    const backend = new ScriptedBackend<CompletionRequest>(() => [ok('')]);
    const gen = new ResponseGenerator(backend, responseConfig({ maxInstructionChars: 100 }));
    expect(await gen.answer(makeInstruction(1, 'x'.repeat(1_000_000)), ctx())).toMatchObject({ kind: 'reject', rule: 'instruction_too_long' });
    expect(await gen.answer(makeInstruction(2, '   '), ctx())).toMatchObject({ kind: 'reject', rule: 'empty_instruction' });
    expect(backend.requests).toHaveLength(0);
    expect(await gen.answer(makeInstruction(3, 'Hi?'), ctx())).toMatchObject({ kind: 'reject', rule: 'empty_response' });
  });

  it('flags a truncated answer', async () => {
    const backend = new ScriptedBackend<CompletionRequest>(() => [{ text: 'A long answer that', finishReason: 'length', tokens: 32 }]);
    const outcome = await new ResponseGenerator(backend, responseConfig()).answer(makeInstruction(1), ctx());
    expect((outcome as { records: { value: Conversation }[] }).records[0]!.value.response_finish_reason).toBe('length');
  });
});
