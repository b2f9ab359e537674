import type { Command } from 'commander';
import type { stageSchemas } from '../../topology/build.js';
import type { Topology } from '../../topology/load.js';
import { loadTopology, type GlobalOptions } from '../common.js';

/** The resolved graph as text: one line per stage with what it reads and writes. */
export function describeTopology(t: Topology, schemasOf: typeof stageSchemas): string {
  const lines = [`topology ${t.name} (${t.source})`, `  brokers: ${t.kafka.brokers.join(',')}`];
  if (t.description) lines.push(`  ${t.description.trim()}`);
  for (const s of t.stages) {
    const schemas = schemasOf(s);
    const from = s.input ? `${s.input} <${schemas.input}>` : '(source)';
    const extras = Object.entries(s.ports).filter(([p]) => p !== 'out').map(([p, topic]) => `${p}: ${topic}`);
    lines.push(`  ${from}`);
    lines.push(`    └─ [${s.name}] ${s.type}  batch=${s.batchSize ?? 'auto'} window=${s.window ?? 'auto'} concurrency=${s.concurrency} ${s.exactlyOnce ? 'exactly-once' : 'at-least-once'}`);
    lines.push(`       → ${s.ports.out} <${schemas.ports.out}>${extras.length ? `  (${extras.join(', ')})` : ''}`);
    lines.push(`       ↳ rejects: ${s.rejects}  dead letters: ${s.deadLetter}`);
  }
  const backends = Object.entries(t.backends).map(([n, b]) => `${n}=${b.type}`);
  if (backends.length) lines.push(`  backends: ${backends.join(', ')}`);
  const embedders = Object.entries(t.embedders).map(([n, e]) => `${n}=${e.model}`);
  if (embedders.length) lines.push(`  embedders: ${embedders.join(', ')}`);
  return lines.join('\n');
}

export function registerTopology(program: Command): void {
  const cmd = program.command('topology').description('inspect topologies');
  cmd
    .command('show')
    .description('validate a topology file and print its resolved graph')
    .argument('<file>', 'topology YAML')
    .option('--json', 'print the resolved topology as JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const t = await loadTopology(file, program.opts<GlobalOptions>());
      if (opts.json) {
        const plain = { ...t, stages: t.stages.map(({ definition: _d, ...rest }) => rest) };
        process.stdout.write(`${JSON.stringify(plain, null, 2)}\n`);
      } else {
        const { stageSchemas } = await import('../../topology/build.js');
        process.stdout.write(`${describeTopology(t, stageSchemas)}\n`);
      }
    });
  cmd
    .command('validate')
    .description('validate topology files; exit 2 with the bad fields named on failure')
    .argument('<files...>', 'topology YAML files')
    .action(async (files: string[]) => {
      for (const file of files) {
        await loadTopology(file, program.opts<GlobalOptions>());
        process.stdout.write(`${file}: ok\n`);
      }
    });
}
