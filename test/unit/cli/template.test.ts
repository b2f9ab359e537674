import { describe, expect, it } from 'vitest';
import { formatTemplateReport, templateReport } from '../../../src/cli/commands/template.js';

const fixture = (name: string) => new URL(`../inference/chat-templates/${name}.json`, import.meta.url).pathname;

describe('magpie template show', () => {
  it('prints the derived template beside the registry entry, marking what agrees', async () => {
    const report = await templateReport(fixture('phi3'));
    expect(report.derived?.preQuery).toBe('<s><|user|>\n');
    expect(report.registry?.name).toBe('phi3');
    const text = formatTemplateReport(report);
    // The registry pins the reference's pre-query; the template renders it without the space.
    expect(text).toContain('pre-query sent\n  derived:  "<s><|user|>\\n"\n  registry: "<s> <|user|>\\n"');
    expect(text).toContain('pre-query as rendered\n  derived:  "<s><|user|>\\n"\n  registry: (same)');
    expect(text).toContain('multi-turn append\n  derived:  "<|user|>\\n"\n  registry: (same)');
  });

  it('shows only the registry entry for a model name, and says what would derive one', async () => {
    const report = await templateReport('Qwen/Qwen2.5-7B-Instruct');
    expect(report.derived).toBeUndefined();
    expect(report.registry?.name).toBe('qwen2.5');
    expect(formatTemplateReport(report)).toMatch(/note: nothing to derive from a name: give the model's GGUF or tokenizer_config.json$/);
  });

  it('fails with the advice to name a family when the template cannot be cut', async () => {
    await expect(templateReport(fixture('needs-system'))).rejects.toThrow(/name a family instead/);
  });
});
