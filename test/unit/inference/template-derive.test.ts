import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { InferenceBackend } from '../../../src/inference/backend.js';
import { deriveTemplate, loadTemplate, readModelChatTemplate, tokenizerConfigChatTemplate } from '../../../src/inference/template-derive.js';
import { familyTemplate, templateStrings, type TemplateFamily } from '../../../src/inference/templates.js';

/** Chat-template fixtures written here in the shape of each model's published tokenizer_config.json. */
const fixture = (name: string) => new URL(`./chat-templates/${name}.json`, import.meta.url).pathname;
const derive = (name: string) =>
  deriveTemplate(tokenizerConfigChatTemplate(JSON.parse(readFileSync(fixture(name), 'utf8')) as Record<string, unknown>, fixture(name), name)!);

/** Template strings compared exactly; the sent pre-query may differ where the registry pins the reference's string. */
const exact = (family: TemplateFamily) => {
  const { name: _n, preQuery: _p, stop: _s, stopTokenIds: _i, ...rest } = templateStrings(familyTemplate(family));
  return rest;
};

const FIXTURES: TemplateFamily[] = ['llama3', 'llama3.1', 'qwen2.5', 'gemma2', 'phi3', 'mistral'];

describe.each(FIXTURES)('the %s chat template, derived', (family) => {
  const derived = derive(family);
  const registry = familyTemplate(family);

  it('yields exactly the registry strings: BOS, pre-query, system variant, headers, multi-turn append, conversation', () => {
    const { name, preQuery, stop: _s, stopTokenIds: _i, ...strings } = templateStrings(derived);
    expect(name).toBe(`auto:${family}`);
    expect(strings).toEqual(exact(family));
    // Derived, the pre-query sent is what the template renders.
    expect(preQuery).toBe(registry.renderedPreQuery);
  });

  it('stops at its end-of-turn and markup tokens, all among the registry stops, with their ids', () => {
    expect(registry.stop).toEqual(expect.arrayContaining([...derived.stop]));
    expect(registry.stopTokenIds).toEqual(expect.arrayContaining([...derived.stopTokenIds]));
    expect(derived.stopTokenIds).toHaveLength(derived.stop.length);
    // The token that ends a user turn (what follows the user's text) is always a stop.
    expect(derived.stop.some((s) => derived.assistantHeader.startsWith(s))).toBe(true);
  });
});

describe('derivation details', () => {
  it('finds the Llama-3.1 end-of-message token among the stops', () => {
    expect(derive('llama3.1').stop).toContain('<|eom_id|>');
    expect(derive('llama3.1').stopTokenIds).toContain(128008);
  });

  it('writes the BOS only where the template does', () => {
    expect(derive('llama3').bos).toBe('<|begin_of_text|>');
    expect(derive('qwen2.5').bos).toBeNull();
    expect(derive('gemma2').bos).toBe('<bos>');
  });

  it('folds a system prompt into the first user turn where the template has no system role', () => {
    expect(derive('gemma2').preQuery('math')).toMatch(/^<bos><start_of_turn>user\nYou are an AI assistant that helps people solve math problems[\s\S]*\n\n$/);
  });

  it('says to name a family when the template cannot be cut at a lone user message', () => {
    expect(() => derive('needs-system')).toThrow(/rejects a conversation of one user message: The first message must be a system message\); name a family instead, e\.g\. template: chatml/);
    const broken = { chat_template: '{% for m in messages %}{{ m.content', bos_token: '<s>' };
    expect(() => deriveTemplate(tokenizerConfigChatTemplate(broken, 'broken.json', 'broken')!)).toThrow(/does not parse.*name a family/);
    const ignoresUser = { chat_template: '{{ bos_token }}Hello' };
    expect(() => deriveTemplate(tokenizerConfigChatTemplate(ignoresUser, 'x.json', 'x')!)).toThrow(/does not appear exactly once.*name a family/);
  });

  it('rejects leaks with the derived markup and keeps natural text', () => {
    const t = derive('qwen2.5');
    expect(t.leak('Can you act as my research assistant?')).toBeUndefined();
    expect(t.leak('Hi<|im_end|>\n<|im_start|>assistant\nHello')).toBe('<|im_start|>');
    expect(t.leak('Hi\nassistant\nHello')).toBe('assistant');
  });
});

describe('loadTemplate', () => {
  it('derives `from: <tokenizer_config.json>` and applies the stage options', async () => {
    const r = await loadTemplate({ from: fixture('qwen2.5'), systemPrompt: 'code', stopTokenIds: [151645] });
    expect(r.template.name).toBe('auto:chat-templates');
    expect(r.instructionPrompt).toMatch(/^<\|im_start\|>system\nYou are an AI assistant that helps people with programming/);
    expect(r.template.stopTokenIds).toEqual([151645]);
  });

  it('asks the backend for `auto`, and says what to do when it has no template', async () => {
    const source = tokenizerConfigChatTemplate(JSON.parse(readFileSync(fixture('llama3'), 'utf8')) as Record<string, unknown>, 'test', 'Meta-Llama-3-8B-Instruct')!;
    const backend = { id: 'fake:llama', modelChatTemplate: async () => source } as unknown as InferenceBackend;
    expect((await loadTemplate('auto', backend)).instructionPrompt).toBe('<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n');
    const remote = { id: 'openai:some-model' } as unknown as InferenceBackend;
    await expect(loadTemplate('auto', remote)).rejects.toThrow(/openai:some-model has none to give; set template.from to its tokenizer_config.json or GGUF, or name a template family/);
  });

  it('names the file when it has no chat template', async () => {
    await expect(readModelChatTemplate(new URL('../../../package.json', import.meta.url).pathname)).rejects.toThrow(/no chat template in it; name a template family/);
  });
});
