import { randomBytes } from 'node:crypto';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { createKafka } from '../kafka/client.js';
import { readTopic } from '../kafka/read-topic.js';
import { skipTagged } from '../processors/skip-tagged.js';
import type { Processor } from '../processors/stage.js';
import type { Rejected } from '../serde/records.generated.js';
import { runTopology } from './build.js';
import { waitUntilDrained } from './drain.js';
import type { ResolvedStage, Topology } from './load.js';
import { Resources } from './resources.js';

export interface ReplayOptions {
  /** Existing topic to read from the beginning. */
  from: string;
  /** New topic the last replayed stage writes to. */
  to: string;
  /** Stage names, run in topology order; default: the topology's filter stages. */
  stages?: string[];
  /** Consumer group reading `from` (later stages use `<group>.<stage>`); default: the replay id. */
  groupId?: string;
  /** Names the intermediate topics; default `replay-<UTC time>-<4 hex>`. */
  replayId?: string;
}

export interface ReplayPlan {
  topology: Topology;
  replayId: string;
  groupId: string;
  /** Where this replay's rejects go: `<to>.rejects`, so they can be counted by rule. */
  rejects: string;
  deadLetter: string;
}

/** `replay-<UTC time>-<4 hex>`: two replays started in the same second still get their own groups. */
export function defaultReplayId(now = new Date()): string {
  return `replay-${now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}-${randomBytes(2).toString('hex')}`;
}

/**
 * The topology a replay runs: the chosen stages chained in topology order, the first reading `from`, the last
 * writing `to`, the ones between through `<replayId>.<stage>.out` (in memory where the topology chains a stage
 * after the one before it and both are replayed); rejects and dead letters of the replay go
 * to `<to>.rejects` and `<to>.dead-letter`, and every stage reads under a new consumer group.
 */
export function planReplay(topology: Topology, options: ReplayOptions): ReplayPlan {
  const names = options.stages ?? topology.stages.filter((s) => s.type === 'filter').map((s) => s.name);
  if (names.length === 0) throw new ConfigError(`${topology.source} has no filter stage: name the stages to replay with --stages`);
  const unknown = names.filter((n) => !topology.stages.some((s) => s.name === n));
  if (unknown.length) throw new ConfigError(`no stage named ${unknown.join(', ')} in ${topology.source} (have: ${topology.stages.map((s) => s.name).join(', ')})`);
  const chosen = topology.stages.filter((s) => names.includes(s.name));
  const sources = chosen.filter((s) => s.definition.kind === 'source');
  if (sources.length) throw new ConfigError(`stage ${sources.map((s) => s.name).join(', ')} generates records and reads no topic: a replay runs processor stages only`);
  if (options.from === options.to) throw new ConfigError(`--from and --to are both ${options.from}: a replay writes into a new topic`);

  const replayId = options.replayId ?? defaultReplayId();
  const groupId = options.groupId ?? replayId;
  const rejects = `${options.to}.rejects`;
  const deadLetter = `${options.to}.dead-letter`;
  const stages = chosen.map((stage, i): ResolvedStage => {
    const last = i === chosen.length - 1;
    // A stage chained in memory stays chained only behind the stage it follows in the topology (validated
    // there); behind any other it reads the replay topic, as chaining after, say, a stage with state is refused.
    const follows = i > 0 && topology.stages.indexOf(stage) - 1 === topology.stages.indexOf(chosen[i - 1]!);
    const extra = Object.keys(stage.ports).filter((p) => p !== 'out');
    return {
      ...stage,
      input: i === 0 ? options.from : `${replayId}.${chosen[i - 1]!.name}.out`,
      ports: { out: last ? options.to : `${replayId}.${stage.name}.out`, ...Object.fromEntries(extra.map((p) => [p, `${replayId}.${stage.name}.${p}`])) },
      rejects,
      deadLetter,
      groupId: i === 0 ? groupId : `${groupId}.${stage.name}`,
      via: stage.via === 'memory' && follows ? 'memory' : 'topic',
    };
  });
  return { topology: { ...topology, stages }, replayId, groupId, rejects, deadLetter };
}

export interface ReplaySummary {
  replayId: string;
  groupId: string;
  from: string;
  to: string;
  /** Records the first stage read. */
  in: number;
  /** Records the last stage wrote to `to`. */
  kept: number;
  deadLettered: number;
  /** Rejects in `<to>.rejects`, by stage and rule. */
  rejected: { stage: string; rule: string; count: number }[];
  /** Records of tag stages that were tagged already and passed through without inference. */
  alreadyTagged: number;
}

async function counterValue(counter: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> }, stage: string): Promise<number> {
  return (await counter.get()).values.find((v) => v.labels.stage === stage)?.value ?? 0;
}

/** Runs a replay to the end of `from` as it is now, then stops and sums up. */
export async function runReplay(topology: Topology, options: ReplayOptions, logger: Logger, signal?: AbortSignal): Promise<ReplaySummary> {
  const plan = planReplay(topology, options);
  const stages = plan.topology.stages;
  const kafka = createKafka(plan.topology.kafka, logger);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    if (!existing.has(options.from)) throw new ConfigError(`topic ${options.from} (--from) does not exist`);
    if (existing.has(options.to) && options.groupId === undefined) {
      throw new ConfigError(`topic ${options.to} (--to) exists already: give a new topic, or the --group of the replay that wrote it to resume that replay`);
    }
  } finally {
    await admin.disconnect();
  }

  // Tag stages that declare their fields only run, and only load their backend, for records still missing them.
  // The run shares these resources, so a backend both kinds of stage use is loaded once.
  const resources = new Resources(plan.topology, logger);
  let alreadyTagged = 0;
  const overrides: Record<string, Processor<unknown, unknown>> = {};
  for (const stage of stages) {
    const def = stage.definition;
    if (def.kind !== 'processor' || !def.writesFields) continue;
    const fields = def.writesFields(stage.config as never);
    const create = async () => {
      await resources.load([stage]);
      return def.create(stage.config as never, resources.depsFor(stage));
    };
    overrides[stage.name] = skipTagged(fields, create, (n) => (alreadyTagged += n));
  }

  logger.info({ replayId: plan.replayId, groupId: plan.groupId, from: options.from, to: options.to, stages: stages.map((s) => s.name) }, 'replay started');
  let running;
  try {
    running = await runTopology(plan.topology, logger, { processorOverrides: overrides, resources });
  } catch (err) {
    await resources.close();
    throw err;
  }
  const byRule = new Map<string, { stage: string; rule: string; count: number }>();
  try {
    await waitUntilDrained(running, signal ? { signal } : {});
    const names = new Set(stages.map((s) => s.name));
    await readTopic(kafka, plan.rejects, async (raw) => {
      const r = await running.serde.decode<Rejected>('magpie.Rejected', raw.value, raw.headers, raw);
      if (!names.has(r.stage)) return;
      const key = `${r.stage}\u0000${r.rule}`;
      const entry = byRule.get(key) ?? { stage: r.stage, rule: r.rule, count: 0 };
      entry.count++;
      byRule.set(key, entry);
    });
  } finally {
    await running.stop();
    await resources.close();
  }
  const first = stages[0]!.name;
  const last = stages[stages.length - 1]!.name;
  let deadLettered = 0;
  for (const s of stages) deadLettered += await counterValue(running.metrics.deadLettered, s.name);
  return {
    replayId: plan.replayId,
    groupId: plan.groupId,
    from: options.from,
    to: options.to,
    in: await counterValue(running.metrics.recordsIn, first),
    kept: await counterValue(running.metrics.recordsOut, last),
    deadLettered,
    rejected: [...byRule.values()].sort((a, b) => b.count - a.count),
    alreadyTagged,
  };
}
