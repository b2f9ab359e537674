import { z } from 'zod';
import type { ChatTemplate } from '../inference/templates.js';

/** Magpie's clean-up of extracted instructions: what makes an instruction unusable, as a named rule. */
export const cleanupConfigSchema = z
  .object({
    minChars: z.number().int().min(1).default(3),
    maxChars: z.number().int().min(1).default(8_000),
    /** An instruction that hit max_tokens was cut off mid-sentence. */
    rejectTruncated: z.boolean().default(true),
  })
  .strict();
export type CleanupConfig = z.infer<typeof cleanupConfigSchema>;
export const DEFAULT_CLEANUP: CleanupConfig = { minChars: 3, maxChars: 8_000, rejectTruncated: true };

/**
 * Extra stop strings for model-written user turns, on top of the template's own. The Magpie reference turns
 * both on by default (and early stopping off for Llama-3.1/3.3 and translation); here both are off, because
 * they cut natural text ("act as my research assistant" ends at "research", a multi-line request at its first
 * line) and the leak check rejects real run-ins into the answer instead.
 */
export const instructionStopSchema = z
  .object({
    /** Reference `stop_tokens_assistant`: stop at the assistant's role name (e.g. `assistant`). */
    assistant: z.boolean().default(false),
    /** Reference early stopping: stop at the first newline, so instructions are one line. */
    newline: z.boolean().default(false),
    /** More stop strings. */
    extra: z.array(z.string().min(1)).default([]),
  })
  .strict();
export type InstructionStopConfig = z.infer<typeof instructionStopSchema>;
export const DEFAULT_INSTRUCTION_STOP: InstructionStopConfig = { assistant: false, newline: false, extra: [] };

/** The stop strings sent when a model writes a user turn: the template's, then the configured extras. */
export function instructionStops(template: ChatTemplate, config: InstructionStopConfig): string[] {
  const extra = [...(config.assistant ? template.assistantStopStrings : []), ...(config.newline ? ['\n'] : []), ...config.extra];
  return [...new Set([...template.stop, ...extra])];
}

export interface CleanupVerdict {
  text: string;
  rejected?: { rule: string; reason: string };
}

/**
 * Strips the text and checks it. `leak` names the first template token found in the text, if any: a model
 * that writes its own chat markup (or runs into the assistant's turn) did not write a clean user query.
 */
export function cleanInstruction(raw: string, finishReason: string, leak: (text: string) => string | undefined, config: CleanupConfig = DEFAULT_CLEANUP): CleanupVerdict {
  const text = raw.trim();
  if (text.length === 0) return { text, rejected: { rule: 'empty_instruction', reason: 'the model wrote an empty instruction' } };
  if (config.rejectTruncated && finishReason === 'length') return { text, rejected: { rule: 'truncated_instruction', reason: 'the instruction hit max_tokens before the end-of-turn token' } };
  const leaked = leak(text);
  if (leaked !== undefined) return { text, rejected: { rule: 'template_leak', reason: `the instruction contains template text ${JSON.stringify(leaked)}` } };
  if (text.length < config.minChars) return { text, rejected: { rule: 'too_short', reason: `the instruction has ${text.length} characters, fewer than ${config.minChars}` } };
  if (text.length > config.maxChars) return { text, rejected: { rule: 'too_long', reason: `the instruction has ${text.length} characters, more than ${config.maxChars}` } };
  return { text };
}
