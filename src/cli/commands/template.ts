import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { deriveTemplate, readModelChatTemplate } from '../../inference/template-derive.js';
import { detectFamily, familyTemplate, templateStrings, TEMPLATE_FAMILIES, type TemplateFamily, type TemplateStrings } from '../../inference/templates.js';

const FIELDS: [keyof TemplateStrings, string][] = [
  ['bos', 'BOS written by the template'],
  ['preQuery', 'pre-query sent'],
  ['renderedPreQuery', 'pre-query as rendered'],
  ['preQueryWithSystem', 'pre-query, system "SYSTEM"'],
  ['assistantHeader', 'assistant header'],
  ['generationPrompt', 'generation prompt'],
  ['mtAppend', 'multi-turn append'],
  ['conversation', 'user, assistant, user'],
  ['stop', 'stop strings'],
  ['stopTokenIds', 'stop token ids'],
];

export interface TemplateReport {
  source: string;
  derived?: TemplateStrings;
  registry?: TemplateStrings;
  note?: string;
}

/** A GGUF or tokenizer_config.json path (or a model directory holding one), or undefined for a model or family name. */
function templateFile(arg: string): string | undefined {
  if (existsSync(arg) && statSync(arg).isDirectory()) {
    const config = join(arg, 'tokenizer_config.json');
    return existsSync(config) ? config : undefined;
  }
  return /\.(gguf|json)$/i.test(arg) ? arg : undefined;
}

/** What `magpie template show` reports: the template derived from the model's own, and the registry's entry. */
export async function templateReport(arg: string): Promise<TemplateReport> {
  const file = templateFile(arg);
  if (!file) {
    const family = (TEMPLATE_FAMILIES as readonly string[]).includes(arg) ? (arg as TemplateFamily) : detectFamily(arg);
    return {
      source: arg,
      ...(family ? { registry: templateStrings(familyTemplate(family)) } : {}),
      note: `nothing to derive from a name: give the model's GGUF or tokenizer_config.json${family ? '' : `; no registry family matches (one of ${TEMPLATE_FAMILIES.join(', ')})`}`,
    };
  }
  const source = await readModelChatTemplate(file);
  const family = detectFamily(source.chatTemplate) ?? detectFamily(source.name);
  return {
    source: file,
    derived: templateStrings(deriveTemplate(source)),
    ...(family ? { registry: templateStrings(familyTemplate(family)) } : { note: 'no registry family matches this template' }),
  };
}

const show = (value: unknown) => JSON.stringify(value);

/** The report as text: per field the derived value and the registry's, `(same)` where they agree. */
export function formatTemplateReport(report: TemplateReport): string {
  const { derived, registry } = report;
  const columns = [...(derived ? [`derived (${derived.name})`] : []), ...(registry ? [`registry (${registry.name})`] : [])];
  const lines = [`template of ${report.source}: ${columns.join(' | ') || 'nothing found'}`];
  for (const [field, label] of FIELDS) {
    lines.push(label);
    if (derived) lines.push(`  derived:  ${show(derived[field])}`);
    if (registry) lines.push(`  registry: ${derived && show(derived[field]) === show(registry[field]) ? '(same)' : show(registry[field])}`);
  }
  if (report.note) lines.push(`note: ${report.note}`);
  return lines.join('\n');
}

export function registerTemplate(program: Command): void {
  const cmd = program.command('template').description('inspect chat templates');
  cmd
    .command('show')
    .description("derive the Magpie templates from a model's own chat template and print them beside the registry's entry")
    .argument('<source>', 'a GGUF, a tokenizer_config.json (or its directory), or a model or family name (registry only)')
    .option('--json', 'print the report as JSON')
    .action(async (source: string, opts: { json?: boolean }) => {
      const report = await templateReport(source);
      process.stdout.write(`${opts.json ? JSON.stringify(report, null, 2) : formatTemplateReport(report)}\n`);
    });
}
