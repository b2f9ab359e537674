import { describe, expect, it } from 'vitest';
import { InferenceError } from '../../../src/core/errors.js';
import { tagLlmJudge } from '../../../src/processors/tag-llm-judge.js';
import { TASK_CATEGORIES } from '../../../src/processors/judge-prompts.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { conversations, deps, inputs, mainValues, ScriptedBackend, stageContext } from './harness.js';

function judge(task: 'task_category' | 'difficulty' | 'input_quality', backend: ScriptedBackend, extra: Record<string, unknown> = {}) {
  return tagLlmJudge.create(tagLlmJudge.config.parse({ backend: 'judge', task, ...extra }), deps({ backend }));
}

async function run(task: 'task_category' | 'difficulty' | 'input_quality', backend: ScriptedBackend, records: Conversation[], extra: Record<string, unknown> = {}) {
  return mainValues<Conversation>(await judge(task, backend, extra).process(inputs(records), stageContext()));
}

describe('tag-llm-judge', () => {
  it('tags task_category from good JSON, with the enum schema for constrained decoding', async () => {
    const backend = new ScriptedBackend(() => '{"primary_tag": "coding & debugging", "other_tags": ["Math", "Coding & Debugging", "Math"]}');
    const [out] = await run('task_category', backend, conversations(['Write a Python function for the nth prime.']));
    expect(out).toMatchObject({ task_category: 'Coding & Debugging', other_task_category: ['Math'], task_category_generator: 'fake-model', tag_failures: [] });
    const req = backend.requests[0]!;
    expect(req.messages[0]!.content).toContain('Write a Python function for the nth prime.');
    expect(req.temperature).toBe(0);
    expect((req.jsonSchema as { properties: { primary_tag: { enum: string[] } } }).properties.primary_tag.enum).toEqual([...TASK_CATEGORIES]);
  });

  it('tags difficulty with intent and knowledge, and input_quality with its explanation', async () => {
    const difficulty = new ScriptedBackend(() => 'Sure! {"intent": "The user wants a sort.", "knowledge": "Sorting algorithms.", "difficulty": "Medium"}');
    const [d] = await run('difficulty', difficulty, conversations(['Sort this list.']));
    expect(d).toMatchObject({ intent: 'The user wants a sort.', knowledge: 'Sorting algorithms.', difficulty: 'medium' });
    const quality = new ScriptedBackend(() => '```json\n{"explanation": "Clear but short.", "input_quality": "good"}\n```');
    const [q] = await run('input_quality', quality, conversations(['Sort this list.']));
    expect(q).toMatchObject({ input_quality: 'good', quality_explanation: 'Clear but short.', quality_generator: 'fake-model', difficulty_generator: null });
    expect(d).toMatchObject({ difficulty_generator: 'fake-model', quality_generator: null });
  });

  it('asks again with a fresh sample after malformed output, then succeeds', async () => {
    const answers = ['{"primary_tag": "Cooking", "other_tags": []}', 'not json at all', '{"primary_tag": "Planning", "other_tags": []}'];
    const backend = new ScriptedBackend((_, call) => answers[call]!);
    const [out] = await run('task_category', backend, conversations(['Plan my week.']));
    expect(out).toMatchObject({ task_category: 'Planning', tag_failures: [] });
    expect(backend.requests.map((r) => r.temperature)).toEqual([0, 0.7, 0.7]);
  });

  it('records a tag failure after retries run out, keeps the record and replaces an earlier failure of the same tag', async () => {
    const backend = new ScriptedBackend(() => ({ text: '{"explanation": "Clear', finishReason: 'length', tokens: 512 }));
    const record: Conversation = { ...conversations(['Plan my week.'])[0]!, tag_failures: [{ tag: 'input_quality', reason: 'old' }, { tag: 'difficulty', reason: 'other' }] };
    const [out] = await run('input_quality', backend, [record], { sampling: { retries: 1 } });
    expect(backend.requests).toHaveLength(2);
    expect(out!.input_quality).toBeNull();
    expect(out!.instruction).toBe('Plan my week.');
    expect(out!.tag_failures).toHaveLength(2);
    expect(out!.tag_failures[0]).toEqual({ tag: 'difficulty', reason: 'other' });
    expect(out!.tag_failures[1]!.tag).toBe('input_quality');
    expect(out!.tag_failures[1]!.reason).toMatch(/^unparseable output after 2 attempts \(cut at maxTokens 512\)/);
  });

  it('clears an earlier failure of the tag once it succeeds', async () => {
    const backend = new ScriptedBackend(() => '{"intent": "i", "knowledge": "k", "difficulty": "hard"}');
    const record: Conversation = { ...conversations(['Prove it.'])[0]!, tag_failures: [{ tag: 'difficulty', reason: 'old' }] };
    const [out] = await run('difficulty', backend, [record]);
    expect(out).toMatchObject({ difficulty: 'hard', tag_failures: [] });
  });

  it('fails only the records whose calls failed retryably, keeping the others tagged', async () => {
    const backend = new ScriptedBackend((req) =>
      JSON.stringify(req.messages).includes('slow one') ? new InferenceError('INFERENCE_TIMEOUT', 'slow', { retryable: true }) : '{"intent":"i","knowledge":"k","difficulty":"easy"}',
    );
    const outcomes = await judge('difficulty', backend).process(inputs(conversations(['a', 'slow one', 'c'])), stageContext());
    expect(outcomes.map((o) => o.kind)).toEqual(['emit', 'failed', 'emit']);
    expect(outcomes[1]).toMatchObject({ error: { code: 'INFERENCE_TIMEOUT' } });
  });

  it('turns a non-retryable backend error into a tag failure', async () => {
    const backend = new ScriptedBackend(() => new InferenceError('INFERENCE_HTTP', 'HTTP 400: prompt too long'));
    const [out] = await run('difficulty', backend, conversations(['a']));
    expect(out!.tag_failures).toEqual([{ tag: 'difficulty', reason: 'INFERENCE_HTTP: HTTP 400: prompt too long' }]);
  });

  it('keeps input order with many records in flight', async () => {
    const backend = new ScriptedBackend((req) => {
      const n = Number(/item (\d+)/.exec(req.messages[0]!.content)![1]);
      return JSON.stringify({ intent: `intent ${n}`, knowledge: 'k', difficulty: 'easy' });
    });
    const texts = Array.from({ length: 40 }, (_, i) => `item ${i}`);
    const out = await run('difficulty', backend, conversations(texts), { maxInFlight: 7 });
    expect(out.map((o) => o.intent)).toEqual(texts.map((_, i) => `intent ${i}`));
  });

  it('skips records already marked as duplicates, with the reason, and judges them when told to', async () => {
    const backend = new ScriptedBackend(() => '{"primary_tag": "Math", "other_tags": []}');
    const [dup, fresh] = conversations(['What is 2+2?', 'What is 3+3?']);
    const records = [{ ...dup!, is_duplicate: true }, { ...fresh!, is_duplicate: false }];
    const [skipped, judged] = await run('task_category', backend, records);
    expect(backend.requests).toHaveLength(1);
    expect(skipped).toMatchObject({ task_category: null, task_category_generator: null });
    expect(skipped!.tag_failures).toEqual([{ tag: 'task_category', reason: expect.stringMatching(/^skipped: .*is_duplicate/) }]);
    expect(judged).toMatchObject({ task_category: 'Math', tag_failures: [] });
    // A replay with skipDuplicates: false fills the tag and clears the skip.
    const [filled] = await run('task_category', backend, [skipped!], { skipDuplicates: false });
    expect(filled).toMatchObject({ task_category: 'Math', task_category_generator: 'fake-model', tag_failures: [] });
  });
});
