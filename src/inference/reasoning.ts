import { z } from 'zod';

/**
 * A reasoning model's answer comes in two parts: its thinking and the answer itself. Servers with a reasoning
 * parser (vLLM `reasoning_content`) split them already; otherwise the thinking sits in the text between tags.
 */
export const reasoningTagsSchema = z.strictObject({
  openTag: z.string().min(1).default('<think>'),
  closeTag: z.string().min(1).default('</think>'),
});
export type ReasoningTags = z.infer<typeof reasoningTagsSchema>;
export const DEFAULT_REASONING_TAGS: ReasoningTags = { openTag: '<think>', closeTag: '</think>' };

export interface SplitAnswer {
  /** The thinking part; undefined when the text has none. */
  reasoning: string | undefined;
  answer: string;
  /** The thinking part never ended (no close tag): there is no answer. */
  unfinished: boolean;
}

/**
 * Splits `<think>…</think>answer`. The thinking must open the text; a text with only the close tag is thinking
 * whose open tag was in the prompt (templates that end the generation prompt with `<think>`). A text without
 * tags is all answer.
 */
export function splitReasoning(text: string, tags: ReasoningTags = DEFAULT_REASONING_TAGS): SplitAnswer {
  const start = text.trimStart();
  if (start.startsWith(tags.openTag)) {
    const rest = start.slice(tags.openTag.length);
    const end = rest.indexOf(tags.closeTag);
    if (end < 0) return { reasoning: rest.trim(), answer: '', unfinished: true };
    return { reasoning: rest.slice(0, end).trim(), answer: rest.slice(end + tags.closeTag.length).trim(), unfinished: false };
  }
  const end = text.indexOf(tags.closeTag);
  if (end >= 0 && !text.slice(0, end).includes(tags.openTag)) {
    return { reasoning: text.slice(0, end).trim(), answer: text.slice(end + tags.closeTag.length).trim(), unfinished: false };
  }
  return { reasoning: undefined, answer: text.trim(), unfinished: false };
}
