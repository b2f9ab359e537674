import type { Command } from 'commander';
import { cliLogger, loadTopology, type GlobalOptions } from '../common.js';

export function registerTopics(program: Command): void {
  const cmd = program.command('topics').description('manage the topics of a topology');
  cmd
    .command('create')
    .description('create every topic a topology reads or writes (existing ones are left alone)')
    .argument('<topology>', 'topology YAML')
    .action(async (file: string) => {
      const opts = program.opts<GlobalOptions>();
      const logger = await cliLogger(opts);
      const t = await loadTopology(file, opts);
      const [{ createKafka }, { createTopologyTopics }, { probeBrokers }] = await Promise.all([import('../../kafka/client.js'), import('../../topology/build.js'), import('../../kafka/probe.js')]);
      await probeBrokers(t.kafka.brokers);
      const created = await createTopologyTopics(createKafka(t.kafka, logger), t, logger);
      process.stdout.write(created.length ? `created: ${created.join(', ')}\n` : 'all topics exist\n');
    });
}
