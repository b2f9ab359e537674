import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { InferenceError } from '../../../src/core/errors.js';
import type { CompletionRequest, Completion } from '../../../src/inference/backend.js';
import { InstructionGenerator } from '../../../src/processors/generate-instructions.js';
import { ResponseGenerator } from '../../../src/processors/generate-responses.js';
import type { Outcome, StageContext } from '../../../src/processors/stage.js';
import { generateInstructions } from '../../../src/processors/generate-instructions.js';
import { generateResponses } from '../../../src/processors/generate-responses.js';
import type { Conversation, Instruction } from '../../../src/serde/records.generated.js';
import { tokenizerConfigChatTemplate } from '../../../src/inference/template-derive.js';
import { SYSTEM_PROMPTS } from '../../../src/inference/templates.js';
import { makeInstruction } from '../../support/records.js';
import { ScriptedBackend, type ScriptedAnswer } from './harness.js';

const ctx = (): StageContext => ({ logger: pino({ level: 'silent' }), signal: new AbortController().signal, heartbeat: async () => undefined });

/** Answers pre-query and answer completions from a script; records every request. */
const scripted = (answer: (req: CompletionRequest, call: number) => ScriptedAnswer) => new ScriptedBackend<CompletionRequest>(answer);

const ok = (text: string, tokens = 5): Completion => ({ text, finishReason: 'stop', tokens });

const isProgress = (o: Outcome<unknown>) => o.kind === 'emit' && o.records.some((r) => r.port === 'progress');

/** Every instruction outcome the source hands out until it is finished (progress records left out). */
async function drain(gen: InstructionGenerator): Promise<Outcome<Instruction>[]> {
  const all: Outcome<Instruction>[] = [];
  for (;;) {
    const batch = await gen.next(100, ctx());
    if (batch.length === 0) return all;
    all.push(...(batch.filter((o) => !isProgress(o)) as Outcome<Instruction>[]));
  }
}

const instructionConfig = (extra: Record<string, unknown> = {}) =>
  generateInstructions.config.parse({ backend: 'b', template: 'chatml', count: 8, samplesPerRequest: 4, inFlight: 2, sampling: { maxTokens: 64, seed: 7 }, ...extra });

describe('InstructionGenerator (Magpie step 1)', () => {
  it('sends only the pre-query template with the family stop strings and n samples', async () => {
    const backend = scripted((req) => Array.from({ length: req.n ?? 1 }, (_, i) => ok(` What is ${i} + ${i}? `)));
    const outcomes = await drain(new InstructionGenerator(backend, instructionConfig()));
    expect(backend.requests).toHaveLength(2);
    expect(backend.requests[0]).toMatchObject({ prompt: '<|im_start|>user\n', n: 4, temperature: 1, topP: 1, maxTokens: 64 });
    expect(backend.requests[0]!.stop).toContain('<|im_end|>');
    // Sample i of a request is seeded seed + i: requests step by samplesPerRequest, so no seed repeats.
    expect(new Set(backend.requests.map((r) => r.seed))).toEqual(new Set([7, 11]));
    expect(outcomes).toHaveLength(8);
    const first = outcomes[0]!;
    expect(first.kind).toBe('emit');
    const value = (first as { records: { value: Instruction }[] }).records[0]!.value;
    expect(value.instruction).toMatch(/^What is \d \+ \d\?$/);
    expect(value.gen_input_configs).toMatchObject({ temperature: 1, top_p: 1, max_tokens: 64, template_family: 'chatml', pre_query_template: '<|im_start|>user\n', input_generator: 'fake:model' });
    expect(value.gen_input_configs.stop).toEqual(['<|im_start|>', '<|im_end|>', '<|endoftext|>']);
    expect(value.model).toBe('fake-model');
  });

  it('records the seed each sample was actually sent with', async () => {
    const backend = scripted((req) => Array.from({ length: req.n ?? 1 }, (_, i) => ({ ...ok(`Question ${i}?`), seed: req.seed! + i })));
    const outcomes = await drain(new InstructionGenerator(backend, instructionConfig()));
    const seeds = outcomes.map((o) => (o as { records: { value: Instruction }[] }).records[0]!.value.gen_input_configs.seed);
    expect(seeds.sort((a, b) => a! - b!)).toEqual([7, 8, 9, 10, 11, 12, 13, 14]);
  });

  it('sends the configured reference stops (assistant, newline) and records them', async () => {
    const backend = scripted((req) => Array.from({ length: req.n ?? 1 }, () => ok('Name a river.')));
    const outcomes = await drain(new InstructionGenerator(backend, instructionConfig({ count: 1, samplesPerRequest: 1, template: 'llama3', stop: { assistant: true, newline: true } })));
    const expected = ['<|eot_id|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', 'assistant', '\n'];
    expect(backend.requests[0]).toMatchObject({ stop: expected, stopTokenIds: [128009, 128001, 128006, 128007] });
    expect((outcomes[0] as { records: { value: Instruction }[] }).records[0]!.value.gen_input_configs).toMatchObject({ stop: expected, stop_token_ids: [128009, 128001, 128006, 128007] });
  });

  it('bans markdown headers as the first token only when asked, with the template ids', async () => {
    const backend = scripted(() => [ok('Plan a trip.')]);
    await drain(new InstructionGenerator(backend, instructionConfig({ count: 1, samplesPerRequest: 1, template: 'llama3.1' })));
    await drain(new InstructionGenerator(backend, instructionConfig({ count: 1, samplesPerRequest: 1, template: 'llama3.1', firstTokenBans: 'markdown-headers' })));
    expect(backend.requests[0]!.firstTokenBans).toBeUndefined();
    expect(backend.requests[1]!.firstTokenBans).toEqual([2, 567, 14711, 827]);
    expect(backend.requests[1]!.stopTokenIds).toContain(128008);
    await expect(new InstructionGenerator(backend, instructionConfig({ template: 'chatml', firstTokenBans: 'markdown-headers' })).init(ctx(), { topicOf: (p) => p, restore: async () => ({ records: 0, next: 0n }) })).rejects.toThrow(/markdown-header token ids/);
  });

  it('with template: auto, sends the pre-query derived from the model\'s own chat template', async () => {
    const backend = scripted(() => [ok('Translate "good morning" into Italian.')]);
    const config = JSON.parse(readFileSync(new URL('../inference/chat-templates/qwen2.5.json', import.meta.url), 'utf8')) as Record<string, unknown>;
    const source = tokenizerConfigChatTemplate(config, 'test', 'Qwen2.5-7B-Instruct');
    const withTemplate = Object.assign(backend, { modelChatTemplate: async () => source });
    const outcomes = await drain(new InstructionGenerator(withTemplate, instructionConfig({ count: 1, samplesPerRequest: 1, template: 'auto' })));
    const prompt = '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n';
    expect(backend.requests[0]).toMatchObject({ prompt, stopTokenIds: [151644, 151645, 151643] });
    expect((outcomes[0] as { records: { value: Instruction }[] }).records[0]!.value.gen_input_configs).toMatchObject({ template_family: 'auto:Qwen2.5-7B-Instruct', pre_query_template: prompt });
  });

  it('keeps natural instructions about an assistant and rejects real template leaks', async () => {
    const texts = [
      'Can you act as my research assistant and summarise this paper?',
      'How do I set up Google Assistant?',
      'What is 2+2?<|im_end|>\n<|im_start|>assistant\n4',
      'What is 2+2?\nassistant\n4',
    ];
    const backend = scripted(() => texts.map((t) => ok(t)));
    const outcomes = await drain(new InstructionGenerator(backend, instructionConfig({ count: 4 })));
    // The count is of clean instructions: the source asks again after the two leaks; the first answer shows the verdicts.
    expect(outcomes.slice(0, 4).map((o) => (o.kind === 'reject' ? o.rule : o.kind))).toEqual(['emit', 'emit', 'template_leak', 'template_leak']);
  });

  it('rejects empty, truncated and template-leaking instructions with the rule, and asks again until the count is clean', async () => {
    const texts: Completion[] = [ok('   '), { text: 'A cut off questi', finishReason: 'length', tokens: 64 }, ok('Hi<|im_start|>assistant\nHello'), ok('Name three rivers.')];
    const backend = scripted((req, i) => (i === 0 ? texts : Array.from({ length: req.n ?? 1 }, () => ok('Name a lake.'))));
    const outcomes = await drain(new InstructionGenerator(backend, instructionConfig({ count: 4, inFlight: 1 })));
    expect(outcomes.map((o) => (o.kind === 'reject' ? o.rule : o.kind))).toEqual(['empty_instruction', 'truncated_instruction', 'template_leak', 'emit', 'emit', 'emit', 'emit']);
    expect(backend.requests.map((r) => r.n)).toEqual([4, 3]);
    const leak = outcomes[2] as { reason: string; record: Instruction };
    expect(leak.reason).toContain('<|im_start|>');
    expect(leak.record.uuid).toMatch(/[0-9a-f-]{36}/);
  });

  it('puts a system-prompt variant before the user header', async () => {
    const backend = scripted(() => [ok('Solve x + 1 = 2.')]);
    await drain(new InstructionGenerator(backend, instructionConfig({ count: 1, samplesPerRequest: 1, template: { family: 'chatml', systemPrompt: 'math' } })));
    expect(backend.requests[0]!.prompt).toMatch(/^<\|im_start\|>system\n.+<\|im_end\|>\n<\|im_start\|>user\n$/s);
  });

  it('retries a retryable backend failure and still produces the count', async () => {
    let failures = 0;
    const backend = scripted((req) => (failures++ < 2 ? new InferenceError('INFERENCE_HTTP', '503', { retryable: true }) : Array.from({ length: req.n ?? 1 }, () => ok('Why is the sky blue?'))));
    const outcomes = await drain(new InstructionGenerator(backend, { ...instructionConfig({ count: 4, inFlight: 1 }) }));
    expect(outcomes.filter((o) => o.kind === 'emit')).toHaveLength(4);
  }, 20_000);
});

describe('ResponseGenerator (Magpie step 2 and multi-turn)', () => {
  const responseConfig = (extra: Record<string, unknown> = {}) => generateResponses.config.parse({ backend: 'b', template: 'chatml', sampling: { maxTokens: 32 }, ...extra });

  it('wraps the instruction in the full chat template and records the answer', async () => {
    const backend = scripted(() => [ok(' Blue light scatters more. ', 6)]);
    const outcome = await new ResponseGenerator(backend, responseConfig()).answer(makeInstruction(1, 'Why is the sky blue?'), ctx());
    expect(backend.requests[0]!.prompt).toBe('<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n');
    expect(backend.requests[0]).toMatchObject({ temperature: 0, maxTokens: 32 });
    expect(outcome.kind).toBe('emit');
    const c = (outcome as { records: { value: Conversation }[] }).records[0]!.value;
    expect(c).toMatchObject({ instruction: 'Why is the sky blue?', response: 'Blue light scatters more.', response_tokens: 6, response_finish_reason: 'stop', instruction_length: 20 });
    expect(c.conversations).toEqual([{ from: 'human', value: 'Why is the sky blue?' }, { from: 'gpt', value: 'Blue light scatters more.' }]);
    expect(c.gen_input_configs).toEqual(makeInstruction(1).gen_input_configs);
  });

  it('lets the model write the follow-up user turn, with the multi-turn system prompt in that prompt only', async () => {
    const backend = scripted((req) => [ok(req.prompt.endsWith('<|im_start|>user\n') ? 'And why is it red at sunset?' : 'Because of scattering.')]);
    const outcome = await new ResponseGenerator(backend, responseConfig({ turns: 2 })).answer(makeInstruction(1, 'Why is the sky blue?'), ctx());
    const c = (outcome as { records: { value: Conversation }[] }).records[0]!.value;
    expect(c.conversations.map((t) => t.from)).toEqual(['human', 'gpt', 'human', 'gpt']);
    expect(c.conversations[2]!.value).toBe('And why is it red at sunset?');
    const exchange = '<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\nBecause of scattering.<|im_end|>\n';
    expect(backend.requests[0]!.prompt).toBe('<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n');
    expect(backend.requests[1]!.prompt).toBe(`<|im_start|>system\n${SYSTEM_PROMPTS.multiturn}<|im_end|>\n${exchange}<|im_start|>user\n`);
    // The answer to the follow-up sees no multi-turn system prompt either.
    expect(backend.requests[2]!.prompt).toBe(`${exchange}<|im_start|>user\nAnd why is it red at sunset?<|im_end|>\n<|im_start|>assistant\n`);
    const plain = scripted((req) => [ok(req.prompt.endsWith('<|im_start|>user\n') ? 'And at night?' : 'Scattering.')]);
    await new ResponseGenerator(plain, responseConfig({ turns: 2, followUpSystemPrompt: false })).answer(makeInstruction(1, 'Why is the sky blue?'), ctx());
    expect(plain.requests[1]!.prompt).toMatch(/^<\|im_start\|>user\n/);
  });

  it('cleans follow-up turns with the same rules as instructions', async () => {
    const followUps = ['Could you be my study assistant for this topic?', 'Thanks!\nAssistant: You are welcome.'];
    let asked = 0;
    const backend = scripted((req) => [ok(req.prompt.endsWith('<|im_start|>user\n') ? followUps[asked++]! : 'Sure.')]);
    const gen = new ResponseGenerator(backend, responseConfig({ turns: 2, followUpStop: { newline: true } }));
    const kept = await gen.answer(makeInstruction(1, 'Explain photosynthesis.'), ctx());
    expect((kept as { records: { value: Conversation }[] }).records[0]!.value.conversations[2]!.value).toBe('Could you be my study assistant for this topic?');
    expect(await gen.answer(makeInstruction(2, 'Explain osmosis.'), ctx())).toMatchObject({ kind: 'reject', rule: 'follow_up_template_leak' });
    expect(backend.requests[1]!.stop).toEqual(['<|im_start|>', '<|im_end|>', '<|endoftext|>', '\n']);
  });

  it('rejects oversized and empty instructions without inference, and empty answers with a rule', async () => {
    const backend = scripted(() => [ok('')]);
    const gen = new ResponseGenerator(backend, responseConfig({ maxInstructionChars: 100 }));
    expect(await gen.answer(makeInstruction(1, 'x'.repeat(1_000_000)), ctx())).toMatchObject({ kind: 'reject', rule: 'instruction_too_long' });
    expect(await gen.answer(makeInstruction(2, '   '), ctx())).toMatchObject({ kind: 'reject', rule: 'empty_instruction' });
    expect(backend.requests).toHaveLength(0);
    expect(await gen.answer(makeInstruction(3, 'Hi?'), ctx())).toMatchObject({ kind: 'reject', rule: 'empty_response' });
  });

  it('keeps a reasoning model\'s thinking apart from its answer, in the record and out of the turns', async () => {
    const backend = scripted(() => [ok('<think>\nRayleigh scattering grows as 1/λ⁴.\n</think>\n\nBlue light scatters more.', 30)]);
    const outcome = await new ResponseGenerator(backend, responseConfig({ reasoning: {} })).answer(makeInstruction(1, 'Why is the sky blue?'), ctx());
    const c = (outcome as { records: { value: Conversation }[] }).records[0]!.value;
    expect(c).toMatchObject({ reasoning: 'Rayleigh scattering grows as 1/λ⁴.', response: 'Blue light scatters more.', response_length: 25, response_tokens: 30 });
    expect(c.conversations[1]).toEqual({ from: 'gpt', value: 'Blue light scatters more.' });
    expect(c.gen_response_configs).toMatchObject({ output_generator: 'fake:model', temperature: 0, max_tokens: 32 });
  });

  it('takes the thinking a server returns apart (vLLM reasoning_content) and leaves tags alone when not asked to split', async () => {
    const backend = scripted(() => [{ ...ok('Blue light scatters more.'), reasoning: ' Short wavelengths scatter. ' }]);
    const c = ((await new ResponseGenerator(backend, responseConfig()).answer(makeInstruction(1), ctx())) as { records: { value: Conversation }[] }).records[0]!.value;
    expect(c).toMatchObject({ reasoning: 'Short wavelengths scatter.', response: 'Blue light scatters more.' });
    const plain = scripted(() => [ok('<think>x</think>y')]);
    const p = ((await new ResponseGenerator(plain, responseConfig()).answer(makeInstruction(1), ctx())) as { records: { value: Conversation }[] }).records[0]!.value;
    expect(p).toMatchObject({ reasoning: null, response: '<think>x</think>y' });
  });

  it('rejects an answer whose thinking never ended', async () => {
    const backend = scripted(() => [{ text: '<think>Let me consider every case', finishReason: 'length', tokens: 32 }]);
    const outcome = await new ResponseGenerator(backend, responseConfig({ reasoning: {} })).answer(makeInstruction(1), ctx());
    expect(outcome).toMatchObject({ kind: 'reject', rule: 'unfinished_reasoning' });
    expect((outcome as { reason: string }).reason).toMatch(/no <\/think> \(cut at maxTokens 32\)/);
  });

  it('flags a truncated answer', async () => {
    const backend = scripted(() => [{ text: 'A long answer that', finishReason: 'length', tokens: 32 }]);
    const outcome = await new ResponseGenerator(backend, responseConfig()).answer(makeInstruction(1), ctx());
    expect((outcome as { records: { value: Conversation }[] }).records[0]!.value.response_finish_reason).toBe('length');
  });
});
