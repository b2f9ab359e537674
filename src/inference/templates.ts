import { z } from 'zod';
import type { ChatMessage } from './backend.js';

/**
 * Chat templates for Magpie. The pre-query template (a chat template up to where the user's text starts)
 * is sent as a raw completion prompt; the model writes a user turn and stops at its end-of-turn token.
 * The no-system pre-query strings, stop strings and stop token ids follow the Magpie reference config
 * exactly; everything else follows each model's own chat format.
 */

export const TEMPLATE_FAMILIES = ['llama3', 'llama3.1', 'chatml', 'qwen2', 'qwen2.5', 'smollm2', 'gemma2', 'gemma', 'phi3', 'mistral', 'llama2', 'vicuna'] as const;
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

/** Everything that defines a chat format written out as strings (the registry's families, custom templates). */
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
  /**
   * Pre-query sent for instructions without a system prompt, where the Magpie reference pins a string that
   * differs from what the model's template renders; default: the rendered text up to where the user's text starts.
   */
  preQueryTemplate?: string;
  /** System prompt the model's own template puts in when a conversation has none (Vicuna, SmolLM2, Qwen2/2.5). */
  defaultSystemPrompt?: string;
  stop: string[];
  stopTokenIds: number[];
  /** Reference `stop_tokens_assistant`: stop strings that cut an instruction where it runs into the answer. */
  assistantStop: string[];
  /** Template strings that must never appear in a generated instruction or response. */
  specialTokens: string[];
  /** Token ids of `#`, `##`, `###`, `####`, to keep an instruction from opening with a markdown header. */
  markdownHeaderTokenIds?: number[];
}

export interface FormatOptions {
  /** Append the assistant header so the model writes the answer (default true). */
  addGenerationPrompt?: boolean;
}

/** Renders a conversation the way a model's chat template does. Throws when the template rejects the messages. */
export type RenderChat = (messages: readonly ChatMessage[], addGenerationPrompt: boolean) => string;

/** What a ChatTemplate needs besides its renderer. */
export interface TemplateInfo {
  name: string;
  bos: string | null;
  stop: string[];
  stopTokenIds: number[];
  assistantStop: string[];
  specialTokens: string[];
  preQueryTemplate?: string;
  markdownHeaderTokenIds?: number[];
}

/** A user message no template alters (no spaces to trim, no markup): where it lands, the user's text starts. */
const USER_TEXT_MARK = 'MagpieSentinelUserText';
const PROBE_ANSWER = 'MagpieSentinelAnswerText';
const PROBE_FIRST = 'MagpieSentinelFirstUserText';

export class ChatTemplate {
  readonly name: string;
  readonly bos: string | null;
  /** Pre-query template without a system prompt, as sent: the core Magpie prompt. */
  readonly preQueryTemplate: string;
  /** The model template's own text up to where the first user message starts (equals preQueryTemplate unless pinned). */
  readonly renderedPreQuery: string;
  /** What the template writes after a user message so the model answers: end of the user turn + generation prompt. */
  readonly assistantHeader: string;
  /** What add_generation_prompt adds. */
  readonly generationPrompt: string;
  /** Appended after an assistant answer so the model writes the next user turn (Magpie-MT `mt_append_template`). */
  readonly mtAppend: string;
  readonly stop: readonly string[];
  readonly stopTokenIds: readonly number[];
  readonly assistantStopStrings: readonly string[];
  readonly specialTokens: readonly string[];
  readonly markdownHeaderTokenIds: readonly number[] | undefined;
  private readonly markup: readonly string[];
  private readonly roleMarker: RegExp;

  constructor(
    readonly info: TemplateInfo,
    private readonly render: RenderChat,
  ) {
    this.name = info.name;
    this.bos = info.bos;
    this.stop = [...info.stop];
    this.stopTokenIds = [...info.stopTokenIds];
    this.assistantStopStrings = [...info.assistantStop];
    this.specialTokens = [...new Set([...info.specialTokens, ...info.stop])].filter((t) => t.length > 0);
    // Plain words among the strings (e.g. a user-configured 'assistant' stop) are not markup: only tokens count anywhere.
    this.markup = this.specialTokens.filter((t) => !/^[\p{L}\p{N}\s]*$/u.test(t));
    this.markdownHeaderTokenIds = info.markdownHeaderTokenIds;
    this.renderedPreQuery = this.textBeforeUser([]);
    this.preQueryTemplate = info.preQueryTemplate ?? this.renderedPreQuery;

    const asked = this.render([{ role: 'user', content: USER_TEXT_MARK }], false);
    const answering = this.render([{ role: 'user', content: USER_TEXT_MARK }], true);
    const after = (text: string) => text.slice(text.indexOf(USER_TEXT_MARK) + USER_TEXT_MARK.length);
    this.assistantHeader = after(answering);
    // Some templates end a conversation with the EOS when not asked to answer: the generation prompt is what differs.
    this.generationPrompt = this.assistantHeader.slice(this.sharedPrefixLength(after(asked), this.assistantHeader));
    const exchange: ChatMessage[] = [{ role: 'user', content: PROBE_FIRST }, { role: 'assistant', content: PROBE_ANSWER }];
    const next = this.multiTurnPreQuery(exchange);
    this.mtAppend = next.slice(this.sharedPrefixLength(this.render(exchange, false), next));

    const roleWord = stripMarkup(this.assistantHeader, this.markup).trim().replace(/:$/, '');
    this.roleMarker = roleMarkerPattern(roleWord);
  }

  /** A ChatTemplate from strings: the registry's families and custom templates. */
  static fromSpec(spec: TemplateSpec): ChatTemplate {
    return new ChatTemplate(
      {
        name: spec.name,
        bos: spec.bos,
        stop: spec.stop,
        stopTokenIds: spec.stopTokenIds,
        assistantStop: spec.assistantStop,
        specialTokens: spec.specialTokens,
        ...(spec.preQueryTemplate === undefined ? {} : { preQueryTemplate: spec.preQueryTemplate }),
        ...(spec.markdownHeaderTokenIds === undefined ? {} : { markdownHeaderTokenIds: spec.markdownHeaderTokenIds }),
      },
      (messages, addGenerationPrompt) => renderSpec(spec, messages, addGenerationPrompt),
    );
  }

  /** The same format with other stop strings or stop token ids. */
  withStops(stop: string[] | undefined, stopTokenIds: number[] | undefined): ChatTemplate {
    if (stop === undefined && stopTokenIds === undefined) return this;
    return new ChatTemplate({ ...this.info, stop: stop ?? this.info.stop, stopTokenIds: stopTokenIds ?? this.info.stopTokenIds }, this.render);
  }

  /** The pre-query prompt; with a system prompt (a built-in name or text), the family's system-turn syntax. */
  preQuery(systemPrompt?: string): string {
    if (systemPrompt === undefined) return this.preQueryTemplate;
    return this.textBeforeUser([{ role: 'system', content: resolveSystemPrompt(systemPrompt) }]);
  }

  /** Prompt for the next user turn after a finished exchange (history ends with an assistant message). */
  multiTurnPreQuery(history: readonly ChatMessage[]): string {
    return this.textBeforeUser(history);
  }

  /** The full prompt for a conversation; with addGenerationPrompt, ready for the assistant's answer. */
  formatConversation(messages: readonly ChatMessage[], options: FormatOptions = {}): string {
    return this.render(messages, options.addGenerationPrompt !== false);
  }

  /** Template markup (special tokens, stop strings) found anywhere in generated text. */
  leaks(text: string): string[] {
    return this.markup.filter((token) => text.includes(token));
  }

  /**
   * The first sign that generated user text is template output rather than a user's words: a special token, the
   * assistant header as the template writes it, or the assistant's role marker on a line of its own (also what
   * is left of a header when the server skips special tokens). The word "assistant" in a sentence is no leak.
   */
  leak(text: string): string | undefined {
    const token = this.leaks(text)[0];
    if (token !== undefined) return token;
    const header = this.assistantHeader.trim();
    if (header.length > 0 && !/^[\p{L}\p{N}]*$/u.test(header) && text.includes(header)) return header;
    const marker = this.roleMarker.exec(text);
    return marker ? marker[0].trim() : undefined;
  }

  /** Length of the common start of two renderings, backed off so that it does not end inside a special token. */
  private sharedPrefixLength(a: string, b: string): number {
    let n = commonPrefixLength(a, b);
    for (const token of this.markup) {
      const start = b.lastIndexOf(token, n - 1);
      if (start >= 0 && start < n && start + token.length > n) n = start;
    }
    return n;
  }

  /** The conversation text up to where the next user message's text starts. */
  private textBeforeUser(before: readonly ChatMessage[]): string {
    const text = this.render([...before, { role: 'user', content: USER_TEXT_MARK }], false);
    const at = text.lastIndexOf(USER_TEXT_MARK);
    if (at < 0) throw new TypeError(`${this.name}: the template dropped the user message`);
    return text.slice(0, at);
  }
}

function commonPrefixLength(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

function stripMarkup(text: string, markup: readonly string[]): string {
  return markup.reduce((t, token) => t.split(token).join(''), text);
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * A role marker is a line that is only the assistant's role name (any case, optionally with a colon), a line
 * that opens with `assistant:`, or the template's role name glued to the end of a sentence and followed by a
 * line break (`What is 2+2?assistant\n\n4`: a header whose special tokens the server skipped). `Model: Corolla`
 * is a natural line, so other role names (Gemma's `model`) count only alone on their line.
 */
function roleMarkerPattern(roleWord: string): RegExp {
  const own = roleWord && roleWord.toLowerCase() !== 'assistant' ? escapeRegExp(roleWord) : undefined;
  const alternatives = [
    '^[ \\t]*(?:[Aa]ssistant|ASSISTANT)[ \\t]*:?[ \\t]*$',
    '^[ \\t]*(?:[Aa]ssistant|ASSISTANT)[ \\t]*:',
    `(?<=[^\\s\\p{L}\\p{N}])${escapeRegExp(roleWord || 'assistant')}(?=[ \\t]*(?:\\n|$))`,
  ];
  if (own) alternatives.push(`^[ \\t]*${own}[ \\t]*$`);
  return new RegExp(alternatives.join('|'), 'mu');
}

function renderSpec(spec: TemplateSpec, messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
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
  return addGenerationPrompt ? out + spec.generationPrompt : out;
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

function chatmlSpec(name: string, stopTokenIds: number[], defaultSystemPrompt?: string): TemplateSpec {
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
    stopTokenIds,
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

const LLAMA3: TemplateSpec = {
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
};

/** Qwen1.5/2/2.5 token ids of <|endoftext|>, <|im_start|>, <|im_end|>. */
const QWEN_STOP_IDS = [151643, 151644, 151645];

const FAMILY_SPECS: Record<TemplateFamily, TemplateSpec> = {
  // Llama-3 / 3.3 Instruct, and the reference's pre-query for every Llama-3.x.
  llama3: LLAMA3,
  // Llama-3.1 Instruct as it ships: its template always opens with a system turn holding the knowledge-cutoff
  // and a date (an empty one when none is given); tool calls end with <|eom_id|>. The pre-query stays the
  // reference's bare user header; markdown-header token ids for the reference's first-token suppression.
  'llama3.1': {
    ...LLAMA3,
    name: 'llama3.1',
    system: { prefix: `${header3('system').prefix}Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n`, suffix: '<|eot_id|>' },
    defaultSystemPrompt: '',
    preQueryTemplate: '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n',
    stop: [...LLAMA3.stop, '<|eom_id|>'],
    stopTokenIds: [...LLAMA3.stopTokenIds, 128008],
    specialTokens: [...LLAMA3_SPECIAL, '<|eom_id|>'],
    markdownHeaderTokenIds: [2, 567, 14711, 827],
  },
  // Generic ChatML, as in the reference: no default system prompt; token ids differ per model, so stop by string.
  chatml: chatmlSpec('chatml', []),
  // Qwen1.5/Qwen2 Instruct: their templates insert a default system turn into conversations; the reference's
  // pre-query is the bare user header.
  qwen2: { ...chatmlSpec('qwen2', QWEN_STOP_IDS, 'You are a helpful assistant.'), preQueryTemplate: '<|im_start|>user\n' },
  // Qwen2.5 Instruct: its default system turn is part of the pre-query too (the reference does the same).
  'qwen2.5': chatmlSpec('qwen2.5', QWEN_STOP_IDS, 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.'),
  // SmolLM2-Instruct: ChatML whose own template adds a default system prompt. Measured with the 135M model
  // at temperature 1: the bare `<|im_start|>user\n` pre-query rambled to max_tokens in 8 of 8 samples; with
  // the default system turn 6 of 8 ended at <|im_end|> with a user-like request.
  smollm2: chatmlSpec('smollm2', [1, 2, 0], 'You are a helpful AI assistant named SmolLM, trained by Hugging Face'),
  // Gemma has no system role: the system text opens the first user turn, followed by a blank line.
  // The reference's stops plus <start_of_turn> (as for Gemma-1.1): a model that opens a new turn is done.
  gemma2: gemmaSpec('gemma2', '<bos><start_of_turn>user\n\n', ['<eos>', '<bos>', '<end_of_turn>', '<start_of_turn>'], [1, 2, 107, 106]),
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
  TEMPLATE_FAMILIES.map((family) => [family, ChatTemplate.fromSpec(FAMILY_SPECS[family])]),
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
  if (t.includes('<|start_header_id|>')) return t.includes('Cutting Knowledge Date') ? 'llama3.1' : 'llama3';
  if (t.includes('<|im_start|>')) {
    if (t.includes('named SmolLM')) return 'smollm2';
    if (t.includes('You are Qwen, created by Alibaba Cloud')) return 'qwen2.5';
    return t.includes('You are a helpful assistant.') ? 'qwen2' : 'chatml';
  }
  if (t.includes('<start_of_turn>')) return 'gemma2';
  if (t.includes('<|user|>') && t.includes('<|end|>')) return 'phi3';
  if (t.includes('<<SYS>>')) return 'llama2';
  if (t.includes('[INST]')) return 'mistral';
  const name = t.toLowerCase();
  if (/llama-?3\.1/.test(name)) return 'llama3.1';
  if (/llama-?3/.test(name)) return 'llama3';
  if (/smollm/.test(name)) return 'smollm2';
  if (/qwen-?2\.5/.test(name)) return 'qwen2.5';
  if (/qwen/.test(name)) return 'qwen2';
  if (/chatml|yi-/.test(name)) return 'chatml';
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

/** The model's own chat template: `model` asks the stage's backend (a GGUF's metadata), or a GGUF / tokenizer_config.json path. */
const derivedConfigSchema = z
  .object({
    from: z.string().min(1).describe('model, or the path of a GGUF or a tokenizer_config.json'),
    systemPrompt: systemPromptField.optional(),
    ...stopOverrides,
  })
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

/** A template in a topology: a family name, a family with options, `auto` (the model's own), or a custom template. */
export const templateConfigSchema = z.union([
  z.enum(TEMPLATE_FAMILIES).transform((family) => ({ family })),
  z.literal('auto').transform(() => ({ from: 'model' })),
  familyConfigSchema,
  derivedConfigSchema,
  customConfigSchema,
]);
export type TemplateConfig = z.input<typeof templateConfigSchema>;
export type ParsedTemplateConfig = z.output<typeof familyConfigSchema> | z.output<typeof derivedConfigSchema> | z.output<typeof customConfigSchema>;

/** Where a config takes the template from the model's own chat template: `model` or a file path; else undefined. */
export function derivedTemplateOrigin(config: TemplateConfig): string | undefined {
  const parsed: ParsedTemplateConfig = templateConfigSchema.parse(config);
  return 'from' in parsed ? parsed.from : undefined;
}

/** A chat template with the topology's system prompt applied. */
export interface ResolvedTemplate {
  template: ChatTemplate;
  /** Resolved system prompt text, if any. */
  systemPrompt: string | undefined;
  /** The pre-query prompt to send for instructions. */
  instructionPrompt: string;
}

/**
 * Builds the template a (validated or raw) template config describes. Throws a ZodError on bad input. A config
 * that takes the model's own template (`auto`, `from:`) needs it `derived` (see loadTemplate).
 */
export function resolveTemplate(config: TemplateConfig, derived?: ChatTemplate): ResolvedTemplate {
  const parsed: ParsedTemplateConfig = templateConfigSchema.parse(config);
  let template: ChatTemplate;
  if ('from' in parsed) {
    if (!derived) throw new TypeError(`template from ${parsed.from}: derive the model's template first (loadTemplate)`);
    template = derived.withStops(parsed.stop, parsed.stopTokenIds);
  } else if ('family' in parsed) {
    template = FAMILY_TEMPLATES[parsed.family].withStops(parsed.stop, parsed.stopTokenIds);
  } else {
    const c = parsed;
    template = ChatTemplate.fromSpec({
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

/** The strings a template yields for Magpie, for printing and for comparing a derived template with the registry. */
export interface TemplateStrings {
  name: string;
  bos: string | null;
  /** What is sent for instructions without a system prompt. */
  preQuery: string;
  /** What the template itself renders there (differs only where the registry pins the reference's string). */
  renderedPreQuery: string;
  preQueryWithSystem: string;
  assistantHeader: string;
  generationPrompt: string;
  mtAppend: string;
  /** A user, assistant, user conversation with the generation prompt. */
  conversation: string;
  stop: string[];
  stopTokenIds: number[];
}

export function templateStrings(t: ChatTemplate): TemplateStrings {
  return {
    name: t.name,
    bos: t.bos,
    preQuery: t.preQueryTemplate,
    renderedPreQuery: t.renderedPreQuery,
    preQueryWithSystem: t.preQuery('SYSTEM'),
    assistantHeader: t.assistantHeader,
    generationPrompt: t.generationPrompt,
    mtAppend: t.mtAppend,
    conversation: t.formatConversation([{ role: 'user', content: 'U1' }, { role: 'assistant', content: 'A1' }, { role: 'user', content: 'U2' }]),
    stop: [...t.stop],
    stopTokenIds: [...t.stopTokenIds],
  };
}
