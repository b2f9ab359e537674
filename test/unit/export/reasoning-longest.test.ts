import { describe, expect, it } from 'vitest';
import { formatRecord, toAlpaca, toOpenAi, toShareGpt } from '../../../src/export/formats.js';
import { LongestEntries } from '../../../src/export/longest.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { makeConversation } from '../../support/records.js';

const reasoned = (): Conversation => ({ ...makeConversation(1, 'What is 2+2?', 'It is 4.'), reasoning: 'Two and two make four.' });
const THOUGHT = '<think>\nTwo and two make four.\n</think>\n\nIt is 4.';

describe('exports of reasoning responses', () => {
  it('drop: the answer alone, in every format, and no reasoning column', () => {
    const c = reasoned();
    const share = toShareGpt(c, { reasoning: 'drop' });
    expect(share).not.toHaveProperty('reasoning');
    expect(share.conversations[1]!.value).toBe('It is 4.');
    expect(toOpenAi(c, { reasoning: 'drop' }).messages[1]!.content).toBe('It is 4.');
    expect(toAlpaca(c, { reasoning: 'drop' }).output).toBe('It is 4.');
    expect(formatRecord('sharegpt', { schema: 'magpie.Conversation', value: c })).toEqual({ row: share });
  });

  it('keep: the thinking before the first answer, and its own column in ShareGPT; response stays the answer', () => {
    const c = { ...reasoned(), conversations: [...reasoned().conversations, { from: 'human' as const, value: 'And 3+3?' }, { from: 'gpt' as const, value: '6.' }] };
    const share = toShareGpt(c, { reasoning: 'keep' });
    expect(share).toMatchObject({ reasoning: 'Two and two make four.', response: 'It is 4.' });
    expect(share.conversations.map((t) => t.value)).toEqual(['What is 2+2?', THOUGHT, 'And 3+3?', '6.']);
    expect(toOpenAi(c, { reasoning: 'keep' }).messages.map((m) => m.content)).toEqual(['What is 2+2?', THOUGHT, 'And 3+3?', '6.']);
    expect(toAlpaca(c, { reasoning: 'keep' }).output).toBe(THOUGHT);
  });

  it('keep on a record without thinking changes nothing but the null column', () => {
    const c = makeConversation(2, 'Hi?', 'Hello.');
    expect(toShareGpt(c, { reasoning: 'keep' })).toEqual({ ...toShareGpt(c), reasoning: null });
    expect(toOpenAi(c, { reasoning: 'keep' })).toEqual(toOpenAi(c));
  });
});

describe('LongestEntries', () => {
  it('keeps the N longest in stream order, the earlier of equal lengths', () => {
    const lengths = [5, 1, 9, 5, 7, 2, 9, 5];
    const longest = new LongestEntries<number>(4);
    lengths.forEach((length, i) => longest.offer(i, length));
    // 9, 9, 7 and the first 5 (index 0).
    expect(longest.items()).toEqual([0, 2, 4, 6]);
    expect(longest.dropped).toBe(4);
  });

  it('matches a sort on random input', () => {
    const lengths = Array.from({ length: 2000 }, (_, i) => (i * 7919) % 503);
    const longest = new LongestEntries<number>(300);
    lengths.forEach((length, i) => longest.offer(i, length));
    const expected = lengths.map((length, i) => ({ length, i })).sort((a, b) => b.length - a.length || a.i - b.i).slice(0, 300).map((e) => e.i).sort((a, b) => a - b);
    expect(longest.items()).toEqual(expected);
  });
});
