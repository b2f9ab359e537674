import { Option, type Command } from 'commander';
import { applyAcls, describeRule, distinctRules, kafkaAclsCommand, type StageAcls } from '../../kafka/acls.js';
import { topologyAcls } from '../../topology/acls.js';
import { createKafka } from '../../kafka/client.js';
import { cliLogger, loadTopology, type GlobalOptions } from '../common.js';

interface AclsOptions {
  stage?: string[];
  format: 'table' | 'json' | 'kafka-acls';
  apply?: boolean;
  adminUser?: string;
  adminPasswordFile?: string;
}

function table(acls: readonly StageAcls[]): string {
  const lines = ['# DESCRIBE comes with READ and WRITE; topics are created beforehand (magpie topics create), so no CREATE.'];
  for (const stage of acls) {
    lines.push(`${stage.stage.includes(' -> ') ? 'chain' : 'stage'} ${stage.stage}  principal ${stage.principal}`);
    for (const rule of stage.rules) lines.push(`  ${describeRule(rule).padEnd(90)}  # ${rule.reason}`);
  }
  return `${lines.join('\n')}\n`;
}

export function registerAcls(program: Command): void {
  program
    .command('acls')
    .description("print the least-privilege ACLs of each stage's principal (with --apply, create them through the Admin API)")
    .argument('<topology>', 'topology YAML')
    .option('--stage <name...>', 'only these stages')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'kafka-acls']).default('table'))
    .option('--apply', "create the ACLs on the topology's cluster (connect as a super user: --admin-user)")
    .option('--admin-user <name>', 'SASL user to apply the ACLs as (same mechanism as kafka.sasl)')
    .option('--admin-password-file <file>', "file holding the admin user's password")
    .action(async (file: string, opts: AclsOptions) => {
      const global = program.opts<GlobalOptions>();
      const topology = await loadTopology(file, global);
      const acls = topologyAcls(topology, opts.stage);
      const rules = distinctRules(acls);
      if (opts.format === 'json') process.stdout.write(`${JSON.stringify(acls, null, 2)}\n`);
      else if (opts.format === 'kafka-acls') process.stdout.write(`${rules.map((r) => kafkaAclsCommand(r, topology.kafka.brokers.join(','))).join('\n')}\n`);
      else process.stdout.write(table(acls));
      if (!opts.apply) return;
      const logger = await cliLogger(global);
      const kafkaConfig = opts.adminUser
        ? {
            ...topology.kafka,
            sasl: { mechanism: topology.kafka.sasl?.mechanism ?? 'scram-sha-512', username: opts.adminUser, ...(opts.adminPasswordFile ? { passwordFile: opts.adminPasswordFile } : {}) },
          }
        : topology.kafka;
      await applyAcls(createKafka(kafkaConfig, logger), rules);
      process.stderr.write(`created ${rules.length} ACLs\n`);
    });
}
