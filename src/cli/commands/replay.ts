import type { Command } from 'commander';
import type { ReplaySummary } from '../../topology/replay.js';
import { cliLogger, loadTopology, probeTopology, untilSignal, type GlobalOptions } from '../common.js';

interface ReplayCliOptions {
  from: string;
  to: string;
  stages?: string;
  group?: string;
}

function describeReplay(s: ReplaySummary): string {
  const lines = [
    `replay ${s.replayId} (group ${s.groupId}): ${s.from} → ${s.to}`,
    `  in ${s.in}, kept ${s.kept}, rejected ${s.rejected.reduce((n, r) => n + r.count, 0)}, dead-lettered ${s.deadLettered}${s.alreadyTagged ? `, already tagged (no inference) ${s.alreadyTagged}` : ''}`,
    ...s.rejected.map((r) => `  rejected ${r.count} by ${r.stage}/${r.rule}`),
  ];
  return lines.join('\n');
}

export function registerReplay(program: Command): void {
  program
    .command('replay')
    .description('run the filter (and optionally tag) stages of a topology over an existing topic from the beginning, into a new topic, under a new consumer group; tag stages skip records already tagged')
    .argument('<topology>', 'topology YAML (its filter thresholds may come from the environment: ${MIN_REWARD:-0})')
    .requiredOption('--from <topic>', 'topic to read from the beginning (full name, no prefix applied)')
    .requiredOption('--to <topic>', 'new topic for the records that pass; rejects go to <to>.rejects, dead letters to <to>.dead-letter')
    .option('--stages <names>', 'stages to run, comma separated, in topology order (default: the filter stages)')
    .option('--group <name>', 'consumer group reading --from (default: the replay id, replay-<UTC time>-<4 hex>); the group of an earlier replay resumes it')
    .addHelpText('after', `
Examples:
  MIN_REWARD=0.5 magpie replay topologies/magpie-pro-filtered.yaml --from magpie.tagged --to magpie.filtered-r05
  magpie replay topologies/magpie-pro.yaml --stages tag-language,filter --from magpie.tagged --to magpie.filtered-v2`)
    .action(async (file: string, opts: ReplayCliOptions) => {
      const global = program.opts<GlobalOptions>();
      const logger = await cliLogger(global);
      const topology = await loadTopology(file, global);
      const { runReplay } = await import('../../topology/replay.js');
      await probeTopology(topology);
      const stop = new AbortController();
      void untilSignal(logger).then(() => stop.abort());
      const summary = await runReplay(
        topology,
        {
          from: opts.from,
          to: opts.to,
          ...(opts.stages ? { stages: opts.stages.split(',').map((s) => s.trim()).filter(Boolean) } : {}),
          ...(opts.group ? { groupId: opts.group } : {}),
        },
        logger,
        stop.signal,
      );
      process.stdout.write(`${describeReplay(summary)}${stop.signal.aborted ? '\n  interrupted: resume with --group ' + summary.groupId : ''}\n`);
      process.exit(process.exitCode ?? 0);
    });
}
