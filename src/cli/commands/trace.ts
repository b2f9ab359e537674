import type { Command } from 'commander';
import { cliLogger, loadTopology, probeTopology, type GlobalOptions } from '../common.js';

export function registerTrace(program: Command): void {
  program
    .command('trace')
    .description('follow one record through the topics of a topology by its uuid: each stage it went through, with topic, partition, offset and time, and the reject or dead letter where it stopped')
    .argument('<topology>', 'topology YAML')
    .argument('<uuid>', 'the record\'s uuid (its key in every topic)')
    .option('--json', 'print the hops as JSON')
    .addHelpText('after', `
Example:
  magpie trace topologies/local.yaml 0b7f6a52-5d1e-4c53-9b0e-5f8f2d1f7c11`)
    .action(async (file: string, uuid: string, opts: { json?: boolean }) => {
      const global = program.opts<GlobalOptions>();
      const logger = await cliLogger(global);
      const topology = await loadTopology(file, global);
      const [{ createKafka }, { createKafkaSerde }, { traceRecord, describeTrace }] = await Promise.all([
        import('../../kafka/client.js'),
        import('../../kafka/schema-store.js'),
        import('../../topology/trace.js'),
      ]);
      await probeTopology(topology);
      const kafka = createKafka(topology.kafka, logger);
      const serde = createKafkaSerde(kafka, topology.serde, logger);
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      try {
        const hops = await traceRecord(kafka, serde, topology, uuid, controller.signal);
        process.stdout.write(`${opts.json ? JSON.stringify(hops) : describeTrace(uuid, hops)}\n`);
        if (hops.length === 0) process.exitCode = 1;
      } finally {
        await serde.close();
      }
    });
}
