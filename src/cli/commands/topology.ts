import { Option, type Command } from 'commander';
import { loadTopology, type GlobalOptions } from '../common.js';

/** Output formats of `magpie topology show` (src/topology/describe.ts renders them). */
const GRAPH_FORMATS = ['text', 'dot', 'mermaid', 'json'] as const;

export function registerTopology(program: Command): void {
  const cmd = program.command('topology').description('inspect topologies');
  cmd
    .command('show')
    .description('validate a topology file and print its graph: sub-topologies, stages with their ports, resources and state, topics')
    .argument('<file>', 'topology YAML')
    .addOption(new Option('--format <format>', 'text (Kafka Streams style), dot (Graphviz), mermaid or json').choices(GRAPH_FORMATS).default('text'))
    .action(async (file: string, opts: { format: (typeof GRAPH_FORMATS)[number] }) => {
      const t = await loadTopology(file, program.opts<GlobalOptions>());
      const [{ renderGraph }, { buildGraph }] = await Promise.all([import('../../topology/describe.js'), import('../../topology/graph.js')]);
      process.stdout.write(`${renderGraph(buildGraph(t), opts.format)}\n`);
    });
  cmd
    .command('validate')
    .description('validate topology files (every edge\'s record types included); exit 2 with the bad fields named on failure')
    .argument('<files...>', 'topology YAML files')
    .action(async (files: string[]) => {
      for (const file of files) {
        const t = await loadTopology(file, program.opts<GlobalOptions>());
        process.stdout.write(`${file}: ok${t.warnings.length ? ` (${t.warnings.length} warning${t.warnings.length === 1 ? '' : 's'}, logged above)` : ''}\n`);
      }
    });
}
