import { z } from 'zod';
import type { ChatMessage } from './backend.js';

/**
 * Chat templates for Magpie. The pre-query template (a chat template up to where the user's text starts)
 * is sent as a raw completion prompt; the model writes a user turn and stops at its end-of-turn token.
 * The no-system pre-query strings, stop strings and stop token ids follow the Magpie reference config
 * exactly; everything else follows each model's own chat format.
 */

export const TEMPLATE_FAMILIES = ['llama3', 'chatml', 'smollm2', 'gemma2', 'gemma', 'phi3', 'mistral', 'llama2', 'vicuna'] as const;
export type TemplateFamily = (typeof TEMPLATE_FAMILIES)[number];

/** Built-in system prompts that steer the kind of instruction a pre-query yields. */
export const SYSTEM_PROMPTS = {
  math:
    'You are an AI assistant that helps people solve math problems step by step. Users ask a broad range of ' +
    'mathematical questions, from arithmetic to advanced topics.\nYou explain the concepts involved, work through ' +
    'each step of the solution and arrive at a correct answer.',
  code:
    'You are an AI assistant that helps people with programming. Users ask a broad range of coding questions, ' +
    'from writing and debugging code to algorithms and software design.\nYou explain the concepts involved, work ' +
    'through the code step by step and arrive at a correct solution.',
  translation:
    'You are an AI assistant that translates text accurately and naturally. Users ask you to translate text ' +
    'between many languages.\nYou convey the meaning, tone and context of the original faithfully, keeping its nuances.',
  multiturn:
    'You are a helpful AI assistant. The user will hold a conversation with you over several rounds: an opening ' +
    'question followed by related follow-up questions. Give thorough, relevant and insightful answers.',
} as const;
export type SystemPromptName = keyof typeof SYSTEM_PROMPTS;

/** `math`, `code`, `translation` or `multiturn` name a built-in prompt; any other text is used as is. */
export function resolveSystemPrompt(nameOrText: string): string {
  return Object.hasOwn(SYSTEM_PROMPTS, nameOrText) ? SYSTEM_PROMPTS[nameOrText as SystemPromptName] : nameOrText;
}

export interface TurnFormat {
  prefix: string;
  suffix: string;
}

/** Everything that defines a chat format. */
export interface TemplateSpec {
  name: string;
  /** The model's BOS token string when prompts write it explicitly (servers must not add a second one). */
  bos: string | null;
  /** Opens every formatted conversation (the BOS, or nothing). */
  begin: string;
  /** null: no system role; system text goes into the first user turn as systemMerge.prefix + text + systemMerge.suffix. */
  system: TurnFormat | null;
  systemMerge: TurnFormat;
  user: TurnFormat;
  assistant: TurnFormat;
  /** Appended after the last user turn so the model answers. */
  generationPrompt: string;
  /** Pre-query without a system prompt; default: the conversation text up to where the first user message starts. */
  preQueryTemplate?: string;
  /** System prompt the model's own template puts in when a conversation has none (Vicuna, SmolLM2). */
  defaultSystemPrompt?: string;
  stop: string[];
  stopTokenIds: number[];
  /** Strings that show a generated instruction ran into the assistant's turn (reference `stop_tokens_assistant`). */
  assistantStop: string[];
  /** Template strings that must never appear in a generated instruction or response. */
  specialTokens: string[];
}

export interface FormatOptions {
  /** Append the assistant header so the model writes the answer (default true). */
  addGenerationPrompt?: boolean;
}

const USER_TEXT_MARK = '\u0000magpie-user-text\u0000';

export class ChatTemplate {
  readonly name: string;
  readonly bos: string | null;
  /** Pre-query template without a system prompt: the core Magpie prompt. */
  readonly preQueryTemplate: string;
  /** Appended after an assistant answer so the model writes the next user turn (Magpie-MT). */
  readonly mtAppend: string;
  readonly stop: readonly string[];
  readonly stopTokenIds: readonly number[];
  readonly assistantStopStrings: readonly string[];
  readonly specialTokens: readonly string[];

  constructor(readonly spec: TemplateSpec) {
    this.name = spec.name;
    this.bos = spec.bos;
    this.mtAppend = spec.user.prefix;
    this.stop = [...spec.stop];
    this.stopTokenIds = [...spec.stopTokenIds];
    this.assistantStopStrings = [...spec.assistantStop];
    this.specialTokens = [...new Set([...spec.specialTokens, ...spec.stop])].filter((t) => t.length > 0);
    this.preQueryTemplate = spec.preQueryTemplate ?? this.textBeforeUser([]);
  }

  /** The pre-query prompt; with a system prompt (a built-in name or text), the family's system-turn syntax. */
  preQuery(systemPrompt?: string): string {
    if (systemPrompt === undefined) return this.preQueryTemplate;
    return this.textBeforeUser([{ role: 'system', content: resolveSystemPrompt(systemPrompt) }]);
  }

  /** Prompt for the next user turn after a finished exchange (history ends with an assistant message). */
  multiTurnPreQuery(history: ChatMessage[]): string {
    return this.formatConversation(history, { addGenerationPrompt: false }) + this.mtAppend;
  }

  /** The full prompt for a conversation; with addGenerationPrompt, ready for the assistant's answer. */
  formatConversation(messages: ChatMessage[], options: FormatOptions = {}): string {
    const { spec } = this;
    let out = spec.begin;
    let pendingSystem: string | undefined;
    const withDefault =
      spec.defaultSystemPrompt !== undefined && messages[0]?.role !== 'system'
        ? [{ role: 'system' as const, content: spec.defaultSystemPrompt }, ...messages]
        : messages;
    for (const message of withDefault) {
      if (message.role === 'system') {
        if (spec.system) out += spec.system.prefix + message.content + spec.system.suffix;
        else pendingSystem = pendingSystem === undefined ? message.content : `${pendingSystem}\n\n${message.content}`;
      } else if (message.role === 'user') {
        const content =
          pendingSystem === undefined ? message.content : spec.systemMerge.prefix + pendingSystem + spec.systemMerge.suffix + message.content;
        pendingSystem = undefined;
        out += spec.user.prefix + content + spec.user.suffix;
      } else {
        out += spec.assistant.prefix + message.content + spec.assistant.suffix;
      }
    }
    if (pendingSystem !== undefined) {
      throw new TypeError(`${spec.name}: a system message needs a following user message (this format has no system role)`);
    }
    return options.addGenerationPrompt === false ? out : out + spec.generationPrompt;
  }

  /** Template strings found in generated text; an instruction with any of them is rejected. */
  leaks(text: string): string[] {
    return this.specialTokens.filter((token) => text.includes(token));
  }

  /** Assistant-header strings found in a generated instruction (it ran into the answer). */
  assistantLeaks(text: string): string[] {
    return this.assistantStopStrings.filter((s) => text.includes(s));
  }

  /**
   * Stop strings for instruction generation. `assistantStop` adds the assistant-header strings and
   * `earlyStopping` a newline, as the reference's options do (both cut legitimate text too, so both are opt-in).
   */
  instructionStop(options: { assistantStop?: boolean; earlyStopping?: boolean } = {}): string[] {
    return [...this.stop, ...(options.assistantStop ? this.assistantStopStrings : []), ...(options.earlyStopping ? ['\n'] : [])];
  }

  /** Removes one leading BOS string (for servers that add the BOS themselves). */
  stripBos(prompt: string): string {
    return this.bos && prompt.startsWith(this.bos) ? prompt.slice(this.bos.length) : prompt;
  }

  /** The conversation text up to where the next user message's text starts. */
  private textBeforeUser(before: ChatMessage[]): string {
    const text = this.formatConversation([...before, { role: 'user', content: USER_TEXT_MARK }], { addGenerationPrompt: false });
    return text.slice(0, text.indexOf(USER_TEXT_MARK));
  }
}

const SYSTEM_MERGE_PARAGRAPH: TurnFormat = { prefix: '', suffix: '\n\n' };

const LLAMA3_SPECIAL = ['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>', '<|end_of_text|>'];
const CHATML_SPECIAL = ['<|im_start|>', '<|im_end|>', '<|endoftext|>'];
const GEMMA_SPECIAL = ['<bos>', '<eos>', '<start_of_turn>', '<end_of_turn>'];
const LLAMA_SP_SPECIAL = ['<s>', '</s>', '<unk>'];

const header3 = (role: string): TurnFormat => ({ prefix: `<|start_header_id|>${role}<|end_header_id|>\n\n`, suffix: '<|eot_id|>' });
const chatml = (role: string): TurnFormat => ({ prefix: `<|im_start|>${role}\n`, suffix: '<|im_end|>\n' });
const gemmaTurn = (role: string): TurnFormat => ({ prefix: `<start_of_turn>${role}\n`, suffix: '<end_of_turn>\n' });
const phi3Turn = (role: string): TurnFormat => ({ prefix: `<|${role}|>\n`, suffix: '<|end|>\n' });

function chatmlSpec(name: string, defaultSystemPrompt?: string): TemplateSpec {
  return {
    name,
    bos: null,
    begin: '',
    system: chatml('system'),
    systemMerge: SYSTEM_MERGE_PARAGRAPH,
    user: chatml('user'),
    assistant: chatml('assistant'),
    generationPrompt: chatml('assistant').prefix,
    ...(defaultSystemPrompt === undefined ? {} : { defaultSystemPrompt }),
    stop: ['<|im_start|>', '<|im_end|>', '<|endoftext|>'],
    stopTokenIds: [],
    assistantStop: ['Assistant', 'assistant'],
    specialTokens: CHATML_SPECIAL,
  };
}

const gemmaSpec = (name: string, preQueryTemplate: string, stop: string[], stopTokenIds: number[]): TemplateSpec => ({
  name,
  bos: '<bos>',
  begin: '<bos>',
  system: null,
  systemMerge: SYSTEM_MERGE_PARAGRAPH,
  user: gemmaTurn('user'),
  assistant: gemmaTurn('model'),
  generationPrompt: '<start_of_turn>model\n',
  preQueryTemplate,
  stop,
  stopTokenIds,
  assistantStop: ['assistant'],
  specialTokens: GEMMA_SPECIAL,
});

const FAMILY_SPECS: Record<TemplateFamily, TemplateSpec> = {
  // Llama-3 / 3.1 / 3.3 Instruct (3.1's optional "Cutting Knowledge Date" system preamble is not added).
  llama3: {
    name: 'llama3',
    bos: '<|begin_of_text|>',
    begin: '<|begin_of_text|>',
    system: header3('system'),
    systemMerge: SYSTEM_MERGE_PARAGRAPH,
    user: header3('user'),
    assistant: header3('assistant'),
    generationPrompt: header3('assistant').prefix,
    stop: ['<|eot_id|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>'],
    stopTokenIds: [128009, 128001, 128006, 128007],
    assistantStop: ['assistant'],
    specialTokens: LLAMA3_SPECIAL,
  },
  // Qwen1.5/2/2.5 and other ChatML models, as in the reference: no default system prompt. Token ids differ
  // per model (Qwen2: 151643-151645, SmolLM2: 0-2), so stop by string; override stopTokenIds per model.
  chatml: chatmlSpec('chatml'),
  // SmolLM2-Instruct: ChatML whose own template adds a default system prompt. Measured with the 135M model
  // at temperature 1: the bare `<|im_start|>user\n` pre-query rambled to max_tokens in 8 of 8 samples; with
  // the default system turn 6 of 8 ended at <|im_end|> with a user-like request.
  smollm2: chatmlSpec('smollm2', 'You are a helpful AI assistant named SmolLM, trained by Hugging Face'),
  // Gemma has no system role: the system text opens the first user turn, followed by a blank line.
  gemma2: gemmaSpec('gemma2', '<bos><start_of_turn>user\n\n', ['<eos>', '<bos>', '<end_of_turn>'], [1, 2, 107]),
  gemma: gemmaSpec('gemma', '<bos><start_of_turn>user\n', ['<eos>', '<bos>', '<start_of_turn>', '<end_of_turn>'], [1, 2, 106, 107]),
  phi3: {
    name: 'phi3',
    bos: '<s>',
    begin: '<s>',
    system: phi3Turn('system'),
    systemMerge: SYSTEM_MERGE_PARAGRAPH,
    user: phi3Turn('user'),
    assistant: phi3Turn('assistant'),
    generationPrompt: phi3Turn('assistant').prefix,
    preQueryTemplate: '<s> <|user|>\n',
    stop: ['</s>', '<s>', '<unk>', '<|endoftext|>', '<|user|>', '<|assistant|>', '<|system|>', '<|end|>'],
    stopTokenIds: [2, 1, 0, 32000, 32001, 32006, 32007, 32010],
    assistantStop: ['assistant'],
    specialTokens: [...LLAMA_SP_SPECIAL, '<|endoftext|>', '<|user|>', '<|assistant|>', '<|system|>', '<|end|>'],
  },
  // Mistral-7B-Instruct-v0.3. Its own template puts the system text in the last user turn; here it goes in
  // the first, which is the same for the single-turn prompts Magpie builds.
  mistral: {
    name: 'mistral',
    bos: '<s>',
    begin: '<s>',
    system: null,
    systemMerge: SYSTEM_MERGE_PARAGRAPH,
    user: { prefix: '[INST] ', suffix: '[/INST]' },
    assistant: { prefix: ' ', suffix: '</s>' },
    generationPrompt: '',
    preQueryTemplate: '<s> [INST] ',
    stop: ['<s>', '</s>', '[INST]', '[/INST]'],
    stopTokenIds: [1, 2, 3, 4],
    assistantStop: ['assistant'],
    specialTokens: [...LLAMA_SP_SPECIAL, '[INST]', '[/INST]'],
  },
  // Llama-2-chat: every user turn opens with the BOS; the system text sits in <<SYS>> inside the first one.
  llama2: {
    name: 'llama2',
    bos: '<s>',
    begin: '',
    system: null,
    systemMerge: { prefix: '<<SYS>>\n', suffix: '\n<</SYS>>\n\n' },
    user: { prefix: '<s>[INST] ', suffix: ' [/INST]' },
    assistant: { prefix: ' ', suffix: ' </s>' },
    generationPrompt: '',
    preQueryTemplate: '<s> [INST] ',
    stop: ['</s>', '<s>', '<unk>', '[INST]', '[/INST]'],
    stopTokenIds: [2, 1, 0],
    assistantStop: ['assistant'],
    specialTokens: [...LLAMA_SP_SPECIAL, '[INST]', '[/INST]', '<<SYS>>', '<</SYS>>'],
  },
  // Vicuna v1.1/1.5 (FastChat format). The tokenizer adds the BOS itself, so prompts carry none.
  vicuna: {
    name: 'vicuna',
    bos: null,
    begin: '',
    system: { prefix: '', suffix: ' ' },
    systemMerge: SYSTEM_MERGE_PARAGRAPH,
    user: { prefix: 'USER: ', suffix: ' ' },
    assistant: { prefix: 'ASSISTANT: ', suffix: '</s>' },
    generationPrompt: 'ASSISTANT:',
    defaultSystemPrompt:
      "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.",
    preQueryTemplate:
      "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.\n\nUSER: ",
    stop: ['</s>', '<s>', '<unk>'],
    stopTokenIds: [2, 1, 0],
    assistantStop: ['ASSISTANT'],
    specialTokens: [...LLAMA_SP_SPECIAL, 'USER:', 'ASSISTANT:'],
  },
};

const FAMILY_TEMPLATES = Object.fromEntries(
  TEMPLATE_FAMILIES.map((family) => [family, new ChatTemplate(FAMILY_SPECS[family])]),
) as Record<TemplateFamily, ChatTemplate>;

export function familyTemplate(family: TemplateFamily): ChatTemplate {
  return FAMILY_TEMPLATES[family];
}

/**
 * Guesses the family from a model's own chat template (e.g. GGUF `tokenizer.chat_template`) or its name.
 * Returns undefined when nothing matches; callers then require an explicit family.
 */
export function detectFamily(chatTemplateOrModelName: string): TemplateFamily | undefined {
  const t = chatTemplateOrModelName;
  if (t.includes('<|start_header_id|>')) return 'llama3';
  if (t.includes('<|im_start|>')) return t.includes('named SmolLM') ? 'smollm2' : 'chatml';
  if (t.includes('<start_of_turn>')) return 'gemma2';
  if (t.includes('<|user|>') && t.includes('<|end|>')) return 'phi3';
  if (t.includes('<<SYS>>')) return 'llama2';
  if (t.includes('[INST]')) return 'mistral';
  const name = t.toLowerCase();
  if (/llama-?3/.test(name)) return 'llama3';
  if (/smollm/.test(name)) return 'smollm2';
  if (/qwen|chatml|yi-/.test(name)) return 'chatml';
  if (/gemma-?2/.test(name)) return 'gemma2';
  if (/gemma/.test(name)) return 'gemma';
  if (/phi-?3/.test(name)) return 'phi3';
  if (/mistral|mixtral/.test(name)) return 'mistral';
  if (/llama-?2/.test(name)) return 'llama2';
  if (/vicuna/.test(name)) return 'vicuna';
  return undefined;
}

const systemPromptField = z
  .string()
  .min(1)
  .describe('math | code | translation | multiturn, or the text of a system prompt');
const stopOverrides = {
  /** Replaces the family's stop strings. */
  stop: z.array(z.string().min(1)).min(1).optional(),
  /** Replaces the family's stop token ids (model-specific, e.g. Qwen2 151643-151645). */
  stopTokenIds: z.array(z.number().int().nonnegative()).optional(),
};

const familyConfigSchema = z
  .object({ family: z.enum(TEMPLATE_FAMILIES), systemPrompt: systemPromptField.optional(), ...stopOverrides })
  .strict();

const customConfigSchema = z
  .object({
    name: z.string().min(1).default('custom'),
    /** Pre-query without a system prompt; default: the conversation text up to the first user message. */
    preQuery: z.string().min(1).optional(),
    bos: z.string().min(1).optional(),
    begin: z.string().optional(),
    /** Omit both for a format without a system role (the system text then opens the first user turn). */
    systemPrefix: z.string().optional(),
    systemSuffix: z.string().optional(),
    userPrefix: z.string().min(1),
    userSuffix: z.string(),
    assistantPrefix: z.string(),
    assistantSuffix: z.string(),
    /** Default: assistantPrefix. */
    generationPrompt: z.string().optional(),
    stop: z.array(z.string().min(1)).min(1),
    stopTokenIds: z.array(z.number().int().nonnegative()).default([]),
    assistantStop: z.array(z.string().min(1)).default([]),
    /** Template strings that must not appear in generated text (stop strings are always included). */
    specialTokens: z.array(z.string().min(1)).default([]),
    systemPrompt: systemPromptField.optional(),
  })
  .strict()
  .refine((c) => (c.systemPrefix === undefined) === (c.systemSuffix === undefined), {
    message: 'give both systemPrefix and systemSuffix, or neither',
    path: ['systemSuffix'],
  });

/** A template in a topology: a family name, a family with options, or a custom template. */
export const templateConfigSchema = z.union([
  z.enum(TEMPLATE_FAMILIES).transform((family) => ({ family })),
  familyConfigSchema,
  customConfigSchema,
]);
export type TemplateConfig = z.input<typeof templateConfigSchema>;

/** A chat template with the topology's system prompt applied. */
export interface ResolvedTemplate {
  template: ChatTemplate;
  /** Resolved system prompt text, if any. */
  systemPrompt: string | undefined;
  /** The pre-query prompt to send for instructions. */
  instructionPrompt: string;
}

/** Builds the template a (validated or raw) template config describes. Throws a ZodError on bad input. */
export function resolveTemplate(config: TemplateConfig): ResolvedTemplate {
  const parsed: z.infer<typeof familyConfigSchema> | z.infer<typeof customConfigSchema> = templateConfigSchema.parse(config);
  let template: ChatTemplate;
  if ('family' in parsed) {
    const f = parsed;
    const base = FAMILY_SPECS[f.family];
    template =
      f.stop || f.stopTokenIds
        ? new ChatTemplate({ ...base, stop: f.stop ?? base.stop, stopTokenIds: f.stopTokenIds ?? base.stopTokenIds })
        : FAMILY_TEMPLATES[f.family];
  } else {
    const c = parsed;
    template = new ChatTemplate({
      name: c.name,
      bos: c.bos ?? null,
      begin: c.begin ?? '',
      system: c.systemPrefix !== undefined && c.systemSuffix !== undefined ? { prefix: c.systemPrefix, suffix: c.systemSuffix } : null,
      systemMerge: SYSTEM_MERGE_PARAGRAPH,
      user: { prefix: c.userPrefix, suffix: c.userSuffix },
      assistant: { prefix: c.assistantPrefix, suffix: c.assistantSuffix },
      generationPrompt: c.generationPrompt ?? c.assistantPrefix,
      ...(c.preQuery === undefined ? {} : { preQueryTemplate: c.preQuery }),
      stop: c.stop,
      stopTokenIds: c.stopTokenIds,
      assistantStop: c.assistantStop,
      specialTokens: c.specialTokens,
    });
  }
  const systemPrompt = parsed.systemPrompt === undefined ? undefined : resolveSystemPrompt(parsed.systemPrompt);
  return { template, systemPrompt, instructionPrompt: template.preQuery(systemPrompt) };
}
