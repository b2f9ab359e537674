import { Command, Option } from 'commander';
import { reportError } from './common.js';
import { registerRun } from './commands/run.js';
import { registerTopics } from './commands/topics.js';
import { registerTopology } from './commands/topology.js';
import { registerProduce } from './commands/produce.js';
import { registerTail } from './commands/tail.js';
import { registerSchemas } from './commands/schemas.js';
import { registerExport } from './commands/export.js';
import { registerReplay } from './commands/replay.js';
import { registerReport } from './commands/report.js';
import { registerAcls } from './commands/acls.js';

const program = new Command('magpie')
  .description('Streaming Magpie alignment-data synthesis on Apache Kafka')
  .addOption(new Option('--brokers <list>', 'Kafka bootstrap servers, comma separated (overrides the topology and KAFKA_BROKERS)'))
  .addOption(new Option('--prefix <prefix>', 'prefix for every topic name of the topology'))
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
  .showHelpAfterError()
  .enablePositionalOptions();

registerRun(program);
registerTopics(program);
registerTopology(program);
registerProduce(program);
registerTail(program);
registerSchemas(program);
registerExport(program);
registerReplay(program);
registerReport(program);
registerAcls(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  reportError(err);
}
