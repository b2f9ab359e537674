import { describe, expect, it } from 'vitest';
import {
  SYSTEM_PROMPTS,
  TEMPLATE_FAMILIES,
  detectFamily,
  familyTemplate,
  resolveTemplate,
  templateConfigSchema,
  type TemplateFamily,
} from '../../../src/inference/templates.js';
import type { ChatMessage } from '../../../src/inference/backend.js';
import { DEFAULT_INSTRUCTION_STOP, instructionStops } from '../../../src/processors/instruction-cleanup.js';

const VICUNA_SYSTEM =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

const SMOLLM_SYSTEM = 'You are a helpful AI assistant named SmolLM, trained by Hugging Face';
const QWEN25_SYSTEM = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.';
const LLAMA31_PREAMBLE = 'Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n';
const LLAMA3_STOP = ['<|eot_id|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>'];
const CHATML_STOP = ['<|im_start|>', '<|im_end|>', '<|endoftext|>'];
const CHATML_CONVERSATION =
  '<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n' +
  '<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n';

const conversation: ChatMessage[] = [
  { role: 'system', content: 'SYS' },
  { role: 'user', content: 'U1' },
  { role: 'assistant', content: 'A1' },
  { role: 'user', content: 'U2' },
];

interface Expected {
  preQuery: string;
  preQueryWithSystem: string;
  mtAppend: string;
  /** formatConversation(conversation) with the generation prompt. */
  conversation: string;
  stop: string[];
  stopTokenIds: number[];
  bos: string | null;
}

// Pre-query strings and stop tokens are the Magpie reference config's; conversations are each model's format.
const EXPECTED: Record<TemplateFamily, Expected> = {
  llama3: {
    preQuery: '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n',
    preQueryWithSystem: '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n',
    mtAppend: '<|start_header_id|>user<|end_header_id|>\n\n',
    conversation:
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nU2<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
    stop: ['<|eot_id|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>'],
    stopTokenIds: [128009, 128001, 128006, 128007],
    bos: '<|begin_of_text|>',
  },
  // As the model ships: its template always writes a system turn with the knowledge-cutoff preamble; the
  // pre-query stays the reference's bare user header.
  'llama3.1': {
    preQuery: '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n',
    preQueryWithSystem: `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n${LLAMA31_PREAMBLE}SYS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n`,
    mtAppend: '<|start_header_id|>user<|end_header_id|>\n\n',
    conversation:
      `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n${LLAMA31_PREAMBLE}SYS<|eot_id|>` +
      '<|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nU2<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
    stop: [...LLAMA3_STOP, '<|eom_id|>'],
    stopTokenIds: [128009, 128001, 128006, 128007, 128008],
    bos: '<|begin_of_text|>',
  },
  qwen2: {
    preQuery: '<|im_start|>user\n',
    preQueryWithSystem: '<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n',
    mtAppend: '<|im_start|>user\n',
    conversation: CHATML_CONVERSATION,
    stop: CHATML_STOP,
    stopTokenIds: [151643, 151644, 151645],
    bos: null,
  },
  'qwen2.5': {
    preQuery: `<|im_start|>system\n${QWEN25_SYSTEM}<|im_end|>\n<|im_start|>user\n`,
    preQueryWithSystem: '<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n',
    mtAppend: '<|im_start|>user\n',
    conversation: CHATML_CONVERSATION,
    stop: CHATML_STOP,
    stopTokenIds: [151643, 151644, 151645],
    bos: null,
  },
  chatml: {
    preQuery: '<|im_start|>user\n',
    preQueryWithSystem: '<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n',
    mtAppend: '<|im_start|>user\n',
    conversation:
      '<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n' +
      '<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n',
    stop: ['<|im_start|>', '<|im_end|>', '<|endoftext|>'],
    stopTokenIds: [],
    bos: null,
  },
  smollm2: {
    preQuery: `<|im_start|>system\n${SMOLLM_SYSTEM}<|im_end|>\n<|im_start|>user\n`,
    preQueryWithSystem: '<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n',
    mtAppend: '<|im_start|>user\n',
    conversation:
      '<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n' +
      '<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n',
    stop: ['<|im_start|>', '<|im_end|>', '<|endoftext|>'],
    stopTokenIds: [1, 2, 0],
    bos: null,
  },
  gemma2: {
    preQuery: '<bos><start_of_turn>user\n\n',
    preQueryWithSystem: '<bos><start_of_turn>user\nSYS\n\n',
    mtAppend: '<start_of_turn>user\n',
    conversation:
      '<bos><start_of_turn>user\nSYS\n\nU1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n' +
      '<start_of_turn>user\nU2<end_of_turn>\n<start_of_turn>model\n',
    stop: ['<eos>', '<bos>', '<end_of_turn>', '<start_of_turn>'],
    stopTokenIds: [1, 2, 107, 106],
    bos: '<bos>',
  },
  gemma: {
    preQuery: '<bos><start_of_turn>user\n',
    preQueryWithSystem: '<bos><start_of_turn>user\nSYS\n\n',
    mtAppend: '<start_of_turn>user\n',
    conversation:
      '<bos><start_of_turn>user\nSYS\n\nU1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n' +
      '<start_of_turn>user\nU2<end_of_turn>\n<start_of_turn>model\n',
    stop: ['<eos>', '<bos>', '<start_of_turn>', '<end_of_turn>'],
    stopTokenIds: [1, 2, 106, 107],
    bos: '<bos>',
  },
  phi3: {
    preQuery: '<s> <|user|>\n',
    preQueryWithSystem: '<s><|system|>\nSYS<|end|>\n<|user|>\n',
    mtAppend: '<|user|>\n',
    conversation:
      '<s><|system|>\nSYS<|end|>\n<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nU2<|end|>\n<|assistant|>\n',
    stop: ['</s>', '<s>', '<unk>', '<|endoftext|>', '<|user|>', '<|assistant|>', '<|system|>', '<|end|>'],
    stopTokenIds: [2, 1, 0, 32000, 32001, 32006, 32007, 32010],
    bos: '<s>',
  },
  mistral: {
    preQuery: '<s> [INST] ',
    preQueryWithSystem: '<s>[INST] SYS\n\n',
    mtAppend: '[INST] ',
    conversation: '<s>[INST] SYS\n\nU1[/INST] A1</s>[INST] U2[/INST]',
    stop: ['<s>', '</s>', '[INST]', '[/INST]'],
    stopTokenIds: [1, 2, 3, 4],
    bos: '<s>',
  },
  llama2: {
    preQuery: '<s> [INST] ',
    preQueryWithSystem: '<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\n',
    mtAppend: '<s>[INST] ',
    conversation: '<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]',
    stop: ['</s>', '<s>', '<unk>', '[INST]', '[/INST]'],
    stopTokenIds: [2, 1, 0],
    bos: '<s>',
  },
  vicuna: {
    preQuery: `${VICUNA_SYSTEM}\n\nUSER: `,
    preQueryWithSystem: 'SYS USER: ',
    mtAppend: 'USER: ',
    conversation: 'SYS USER: U1 ASSISTANT: A1</s>USER: U2 ASSISTANT:',
    stop: ['</s>', '<s>', '<unk>'],
    stopTokenIds: [2, 1, 0],
    bos: null,
  },
};

describe.each(TEMPLATE_FAMILIES)('%s template', (family) => {
  const t = familyTemplate(family);
  const e = EXPECTED[family];

  it('has the reference pre-query template, stop strings and stop token ids', () => {
    expect(t.preQueryTemplate).toBe(e.preQuery);
    expect(t.preQuery()).toBe(e.preQuery);
    expect(t.stop).toEqual(e.stop);
    expect(t.stopTokenIds).toEqual(e.stopTokenIds);
    expect(t.bos).toBe(e.bos);
  });

  it('builds the pre-query with a system prompt in the family syntax', () => {
    expect(t.preQuery('SYS')).toBe(e.preQueryWithSystem);
  });

  it('formats a full conversation with the generation prompt', () => {
    expect(t.formatConversation(conversation, { addGenerationPrompt: true })).toBe(e.conversation);
    expect(t.formatConversation(conversation)).toBe(e.conversation);
  });

  it('pre-query with a system prompt is the conversation text up to the user message', () => {
    const full = t.formatConversation([{ role: 'system', content: 'SYS' }, { role: 'user', content: 'Q' }]);
    expect(full.startsWith(e.preQueryWithSystem + 'Q')).toBe(true);
  });

  it('appends the user header after an answer for multi-turn', () => {
    expect(t.mtAppend).toBe(e.mtAppend);
    const history = conversation.slice(0, 3);
    expect(t.multiTurnPreQuery(history)).toBe(t.formatConversation(history, { addGenerationPrompt: false }) + e.mtAppend);
    // The next user turn the model writes lands exactly where a real user turn would.
    expect(t.formatConversation(conversation).startsWith(t.multiTurnPreQuery(history) + 'U2')).toBe(true);
  });

  it('detects leaked template tokens and nothing in clean text', () => {
    expect(t.leaks('How do I sort a list in Python?')).toEqual([]);
    for (const stop of e.stop) expect(t.leaks(`question ${stop} more`)).toContain(stop);
    expect(t.leaks(e.conversation).length).toBeGreaterThan(0);
  });

  it('knows its BOS, which starts the conversation when the template has one', () => {
    expect(t.bos ?? null).toBe(e.bos ?? null);
    if (e.bos) expect(e.conversation.startsWith(t.bos!)).toBe(true);
  });
});

describe('system prompts', () => {
  it('resolves built-in names to text and keeps custom text', () => {
    const t = familyTemplate('chatml');
    expect(t.preQuery('math')).toBe(`<|im_start|>system\n${SYSTEM_PROMPTS.math}<|im_end|>\n<|im_start|>user\n`);
    expect(t.preQuery('code')).toContain(SYSTEM_PROMPTS.code);
    expect(t.preQuery('translation')).toContain(SYSTEM_PROMPTS.translation);
    expect(t.preQuery('You answer questions about birds.')).toBe(
      '<|im_start|>system\nYou answer questions about birds.<|im_end|>\n<|im_start|>user\n',
    );
  });

  it('vicuna keeps its own system line unless one is given', () => {
    const t = familyTemplate('vicuna');
    expect(t.formatConversation([{ role: 'user', content: 'Q' }])).toBe(`${VICUNA_SYSTEM} USER: Q ASSISTANT:`);
  });

  it('smollm2 puts in its default system prompt when a conversation has none, as its own template does', () => {
    const t = familyTemplate('smollm2');
    expect(t.formatConversation([{ role: 'user', content: 'Q' }])).toBe(
      `<|im_start|>system\n${SMOLLM_SYSTEM}<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n`,
    );
    expect(t.preQuery('math')).toBe(`<|im_start|>system\n${SYSTEM_PROMPTS.math}<|im_end|>\n<|im_start|>user\n`);
  });

  it('a system message with no user turn after it is an error where the format has no system role', () => {
    expect(() => familyTemplate('gemma2').formatConversation([{ role: 'system', content: 'S' }])).toThrow(/system/);
  });
});

describe('instruction stop strings', () => {
  it('adds the reference assistant stop, the newline early stop and extras only when asked', () => {
    const t = familyTemplate('llama3');
    expect(instructionStops(t, DEFAULT_INSTRUCTION_STOP)).toEqual(EXPECTED.llama3.stop);
    expect(instructionStops(t, { assistant: true, newline: true, extra: ['###'] })).toEqual([...EXPECTED.llama3.stop, 'assistant', '\n', '###']);
    expect(instructionStops(familyTemplate('chatml'), { assistant: true, newline: false, extra: [] })).toEqual([...EXPECTED.chatml.stop, 'Assistant', 'assistant']);
  });
});

// Requests for a writing, research or virtual assistant are among the most common real instructions.
const NATURAL = [
  'Can you act as my research assistant and summarise this paper?',
  'Assistant professors at my university teach four courses a year. Is that a lot?',
  'WRITE A JOB AD FOR AN EXECUTIVE ASSISTANT IN CAPITALS.',
  'How do I turn off Google Assistant on my Pixel phone?',
  'Compare Siri, Alexa and Google Assistant.\nWhich one respects privacy most?',
  'I am hiring a virtual assistant.\nWhat should I ask in the interview?',
  'Write a dialogue in which an assistant helps a customer return a jacket.',
  'What does an ASSISTANT REFEREE do in football?',
  'My assistant (a new hire) keeps missing deadlines. How do I bring it up?',
];

describe.each(TEMPLATE_FAMILIES)('%s leak check', (family) => {
  const t = familyTemplate(family);
  const e = EXPECTED[family];

  it('keeps natural instructions that mention an assistant', () => {
    for (const text of NATURAL) expect(t.leak(text), text).toBeUndefined();
  });

  it('rejects a run into the answer with the assistant header as the template writes it', () => {
    const ran = t.formatConversation([{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: 'Four.' }]);
    const written = ran.slice(ran.indexOf('What is 2+2?'));
    expect(t.leak(written), JSON.stringify(written)).toBeDefined();
    expect(t.leak(`What is 2+2?${t.assistantHeader}Four.`)).toBeDefined();
  });

  it('rejects special tokens and stop strings anywhere', () => {
    for (const stop of e.stop) expect(t.leak(`question ${stop} more`)).toBe(stop);
  });

  it('rejects a role marker at a line start', () => {
    expect(t.leak('Tell me a joke.\nAssistant: Why did the chicken cross the road?')).toBe('Assistant:');
    expect(t.leak('Tell me a joke.\nassistant\nWhy did the chicken cross the road?')).toBe('assistant');
    expect(t.leak('Tell me a joke.\nASSISTANT:\nWhy did the chicken cross the road?')).toBe('ASSISTANT:');
  });
});

describe('leaks once the server skipped the special tokens', () => {
  it('rejects what is left of the header: the role name glued to the sentence or alone on a line', () => {
    expect(familyTemplate('llama3').leak('What is 2+2?assistant\n\nFour.')).toBe('assistant');
    expect(familyTemplate('chatml').leak('What is 2+2?\nassistant\nFour.')).toBe('assistant');
    expect(familyTemplate('gemma2').leak('What is 2+2?\nmodel\nFour.')).toBe('model');
    expect(familyTemplate('gemma2').leak('Car details:\nModel: Corolla\nYear: 2010. What is it worth?')).toBeUndefined();
    expect(familyTemplate('vicuna').leak('What is 2+2? ASSISTANT: Four.')).toBe('ASSISTANT:');
  });
});

describe('resolveTemplate', () => {
  it('accepts a bare family name', () => {
    const r = resolveTemplate('chatml');
    expect(r.template).toBe(familyTemplate('chatml'));
    expect(r.instructionPrompt).toBe('<|im_start|>user\n');
    expect(r.systemPrompt).toBeUndefined();
  });

  it('applies a named system prompt and stop overrides', () => {
    const r = resolveTemplate({ family: 'chatml', systemPrompt: 'math', stopTokenIds: [0, 1, 2] });
    expect(r.systemPrompt).toBe(SYSTEM_PROMPTS.math);
    expect(r.instructionPrompt).toBe(`<|im_start|>system\n${SYSTEM_PROMPTS.math}<|im_end|>\n<|im_start|>user\n`);
    expect(r.template.stopTokenIds).toEqual([0, 1, 2]);
    expect(r.template.stop).toEqual(EXPECTED.chatml.stop);
  });

  it('builds a custom template', () => {
    const r = resolveTemplate({
      name: 'alpaca-ish',
      userPrefix: '### Instruction:\n',
      userSuffix: '\n\n',
      assistantPrefix: '### Response:\n',
      assistantSuffix: '</s>\n',
      systemPrefix: '',
      systemSuffix: '\n\n',
      stop: ['###', '</s>'],
      systemPrompt: 'Be brief.',
    });
    expect(r.template.name).toBe('alpaca-ish');
    expect(r.template.preQueryTemplate).toBe('### Instruction:\n');
    expect(r.instructionPrompt).toBe('Be brief.\n\n### Instruction:\n');
    expect(r.template.formatConversation([{ role: 'user', content: 'Q' }])).toBe('### Instruction:\nQ\n\n### Response:\n');
    expect(r.template.leaks('a ### b')).toEqual(['###']);
  });

  it('uses an explicit custom pre-query and merges system text when there is no system role', () => {
    const r = resolveTemplate({
      preQuery: '<s>Q: ',
      bos: '<s>',
      begin: '<s>',
      userPrefix: 'Q: ',
      userSuffix: '\n',
      assistantPrefix: 'A: ',
      assistantSuffix: '\n',
      stop: ['\nQ:'],
    });
    expect(r.instructionPrompt).toBe('<s>Q: ');
    expect(r.template.preQuery('S')).toBe('<s>Q: S\n\n');
    expect(r.template.bos).toBe('<s>');
  });

  it('rejects unknown families, stray fields and half a system format', () => {
    expect(templateConfigSchema.safeParse('llama9').success).toBe(false);
    expect(templateConfigSchema.safeParse({ family: 'chatml', sytemPrompt: 'x' }).success).toBe(false);
    expect(
      templateConfigSchema.safeParse({ userPrefix: 'U', userSuffix: '', assistantPrefix: 'A', assistantSuffix: '', stop: ['x'], systemPrefix: 'S' })
        .success,
    ).toBe(false);
    expect(templateConfigSchema.safeParse({ userPrefix: 'U', userSuffix: '', assistantPrefix: 'A', assistantSuffix: '', stop: [] }).success).toBe(false);
  });
});

describe('detectFamily', () => {
  it('recognises model chat templates and names', () => {
    expect(detectFamily("{{'<|im_start|>' + message['role']}}")).toBe('chatml');
    expect(detectFamily('<|start_header_id|>')).toBe('llama3');
    expect(detectFamily("{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>' }}")).toBe('smollm2');
    expect(detectFamily('HuggingFaceTB/SmolLM2-360M-Instruct')).toBe('smollm2');
    expect(detectFamily('<start_of_turn>')).toBe('gemma2');
    expect(detectFamily("<<SYS>>\\n [INST]")).toBe('llama2');
    expect(detectFamily('[INST] x [/INST]')).toBe('mistral');
    expect(detectFamily('meta-llama/Meta-Llama-3-8B-Instruct')).toBe('llama3');
    expect(detectFamily('Qwen/Qwen2.5-7B-Instruct')).toBe('qwen2.5');
    expect(detectFamily('Qwen/Qwen2-7B-Instruct')).toBe('qwen2');
    expect(detectFamily('meta-llama/Llama-3.1-8B-Instruct')).toBe('llama3.1');
    expect(detectFamily("{{- 'Cutting Knowledge Date: December 2023' }}<|start_header_id|>")).toBe('llama3.1');
    expect(detectFamily("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.")).toBe('qwen2.5');
    expect(detectFamily('google/gemma-1.1-7b-it')).toBe('gemma');
    expect(detectFamily('lmsys/vicuna-7b-v1.5')).toBe('vicuna');
    expect(detectFamily('gpt2')).toBeUndefined();
  });
});
