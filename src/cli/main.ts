import { Command, Option } from 'commander';
import { reportError } from './common.js';
import { LOG_FORMATS } from './output-formats.js';
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
import { registerTemplate } from './commands/template.js';
import { registerTrace } from './commands/trace.js';

const program = new Command('magpie')
  .description('Streaming Magpie alignment-data synthesis on Apache Kafka')
  .addOption(new Option('--brokers <list>', 'Kafka bootstrap servers, comma separated (overrides the topology and KAFKA_BROKERS)'))
  .addOption(new Option('--prefix <prefix>', 'prefix for every topic name of the topology'))
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
  .addOption(new Option('--log-format <format>', 'logs as readable lines with a live progress line (default on a terminal) or JSON lines (default when piped)').choices(LOG_FORMATS))
  .option('--verbose', 'on failure, print the stack trace and causes too (accepted anywhere on the line)')
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
registerTemplate(program);
registerTrace(program);

// --verbose is wanted after a failure, typed at the end of the line that failed: taken from anywhere.
const verbose = process.argv.includes('--verbose');
try {
  await program.parseAsync(process.argv.filter((arg, i) => i < 2 || arg !== '--verbose'));
} catch (err) {
  reportError(err, verbose);
}
