import { describe, expect, it } from 'vitest';
import { splitReasoning } from '../../../src/inference/reasoning.js';

describe('splitReasoning', () => {
  it('takes the thinking at the start of the text apart from the answer', () => {
    expect(splitReasoning('<think>\nTwo plus two is four.\n</think>\n\nThe answer is 4.')).toEqual({ reasoning: 'Two plus two is four.', answer: 'The answer is 4.', unfinished: false });
    expect(splitReasoning('  \n<think>a</think>b')).toEqual({ reasoning: 'a', answer: 'b', unfinished: false });
  });

  it('reads a text with only the close tag as thinking opened by the prompt', () => {
    expect(splitReasoning('Let me think.</think>It is 4.')).toEqual({ reasoning: 'Let me think.', answer: 'It is 4.', unfinished: false });
  });

  it('marks thinking without its end tag as unfinished, with no answer', () => {
    expect(splitReasoning('<think>First, consider the cases, then')).toEqual({ reasoning: 'First, consider the cases, then', answer: '', unfinished: true });
  });

  it('leaves a text without thinking as the answer, tags later in the text included', () => {
    expect(splitReasoning(' Just the answer. ')).toEqual({ reasoning: undefined, answer: 'Just the answer.', unfinished: false });
    expect(splitReasoning('Use <think> and </think> tags like this.')).toEqual({ reasoning: undefined, answer: 'Use <think> and </think> tags like this.', unfinished: false });
  });

  it('keeps an empty thinking part empty and honours other tags', () => {
    expect(splitReasoning('<think>\n\n</think>\n\nHi.')).toEqual({ reasoning: '', answer: 'Hi.', unfinished: false });
    expect(splitReasoning('<reasoning>x</reasoning>y', { openTag: '<reasoning>', closeTag: '</reasoning>' })).toEqual({ reasoning: 'x', answer: 'y', unfinished: false });
  });
});
