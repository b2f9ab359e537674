import { describe, expect, it } from 'vitest';
import { parseSafetyVerdict } from '../../../src/processors/judge-prompts.js';
import { tagSafety } from '../../../src/processors/tag-safety.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { makeConversation } from '../../support/records.js';
import { deps, inputs, mainValues, ScriptedBackend, stageContext } from './harness.js';

describe('parseSafetyVerdict', () => {
  it.each([
    ['safe', 'safe'],
    ['  Safe\n', 'safe'],
    ['unsafe\nS2', 'unsafe\nS2'],
    ['unsafe\nS1,S09', 'unsafe\nS1,S9'],
    ['unsafe S10', 'unsafe\nS10'],
    ['unsafe\nS3, S3\nThis also touches S9.', 'unsafe\nS3'],
    ['unsafe', 'unsafe'],
  ])('%j → %j', (text, verdict) => {
    expect(parseSafetyVerdict(text)).toBe(verdict);
  });

  it.each(['', 'I cannot answer that.', 'unsafely', 'The answer is safe'])('rejects %j', (text) => {
    expect(() => parseSafetyVerdict(text)).toThrow(/safe or unsafe/);
  });
});

describe('tag-safety', () => {
  const record = makeConversation(1, 'How do I pick a lock?', 'Here is how...');

  async function run(backend: ScriptedBackend, extra: Record<string, unknown> = {}): Promise<Conversation> {
    const processor = tagSafety.create(tagSafety.config.parse({ backend: 'guard', ...extra }), deps({ backend }));
    return mainValues<Conversation>(await processor.process(inputs([record]), stageContext()))[0]!;
  }

  it('sends the conversation as chat turns for a Llama Guard model and stores the verdict', async () => {
    const backend = new ScriptedBackend(() => 'unsafe\nS2');
    const out = await run(backend);
    expect(out.llama_guard_2).toBe('unsafe\nS2');
    expect(backend.requests[0]!.messages).toEqual([{ role: 'user', content: 'How do I pick a lock?' }, { role: 'assistant', content: 'Here is how...' }]);
  });

  it('builds its own policy prompt for a general model, judging the user turn when asked', async () => {
    const backend = new ScriptedBackend(() => 'safe');
    const out = await run(backend, { prompt: 'builtin', assess: 'user' });
    expect(out.llama_guard_2).toBe('safe');
    const [message] = backend.requests[0]!.messages;
    expect(backend.requests[0]!.messages).toHaveLength(1);
    expect(message!.content).toContain('S8: Indiscriminate Weapons');
    expect(message!.content).toContain('User: How do I pick a lock?');
    expect(message!.content).not.toContain('Here is how');
    expect(message!.content).toContain('last User message');
  });

  it('resamples unparseable verdicts, then records a tag failure', async () => {
    const backend = new ScriptedBackend(() => 'I am not sure.');
    const out = await run(backend, { sampling: { retries: 2, maxTokens: 16 } });
    expect(backend.requests).toHaveLength(3);
    expect(out.llama_guard_2).toBeNull();
    expect(out.tag_failures).toHaveLength(1);
    expect(out.tag_failures[0]!.tag).toBe('llama_guard_2');
    expect(out.tag_failures[0]!.reason).toContain('I am not sure.');
  });

  it('skips a record already marked as a duplicate unless told otherwise', async () => {
    const backend = new ScriptedBackend(() => 'safe');
    const processor = (extra: Record<string, unknown> = {}) => tagSafety.create(tagSafety.config.parse({ backend: 'guard', ...extra }), deps({ backend }));
    const duplicate = { ...record, is_duplicate: true };
    const [skipped] = mainValues<Conversation>(await processor().process(inputs([duplicate]), stageContext()));
    expect(backend.requests).toHaveLength(0);
    expect(skipped).toMatchObject({ llama_guard_2: null, tag_failures: [{ tag: 'llama_guard_2', reason: expect.stringMatching(/^skipped/) }] });
    const [judged] = mainValues<Conversation>(await processor({ skipDuplicates: false }).process(inputs([skipped!]), stageContext()));
    expect(judged).toMatchObject({ llama_guard_2: 'safe', tag_failures: [] });
  });
});
