import type { Kafka } from 'kafkajs';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { StageMetrics } from '../core/metrics.js';
import { guardAccess } from '../kafka/access-guard.js';
import type { AclRule } from '../kafka/acls.js';
import { ensureTopics, partitionCounts } from '../kafka/admin.js';
import { isInferredRefusal, type AccessContext, type KafkaAccessError } from '../kafka/auth-errors.js';
import type { BacklogBound } from '../kafka/backlog-gate.js';
import { createKafka } from '../kafka/client.js';
import type { RouteTarget } from '../kafka/route.js';
import type { Processor, ProcessorDefinition } from '../processors/stage.js';
import { SourceRunner } from '../kafka/source-runner.js';
import { StageRunner } from '../kafka/stage-runner.js';
import { createKafkaSerde } from '../kafka/schema-store.js';
import type { RecordSerde } from '../serde/serde.js';
import { topologyChains } from './graph.js';
import { keepsState, topologyTopics, type ResolvedStage, type Topology } from './load.js';
import { Resources } from './resources.js';
import { topologyAcls } from './acls.js';

export function routeTarget(stage: ResolvedStage): RouteTarget {
  return {
    name: stage.name,
    inputSchema: stage.inputSchema,
    ports: stage.ports,
    portSchemas: stage.portSchemas,
    rejects: stage.rejects,
    deadLetter: stage.deadLetter,
    retry: stage.retry,
    deadLetterAfterAttempts: stage.deadLetterAfterAttempts,
  };
}

/**
 * Chunk size and window of a stage. Unset, they follow from the backend: a partition's window holds four times
 * the requests the backend runs at once, in sixteen chunks, so the server stays full while the oldest chunk waits
 * for its longest answer (commits go in offset order). Stages without a backend: eight chunks of 32, so that
 * while one transaction commits, the chunks done meanwhile wait to go out together in the next.
 */
export function stageTuning(stage: ResolvedStage, backendConcurrency: number | undefined): { batchSize: number; window: number } {
  // A stage with state processes its chunks strictly one after another; load.ts refuses a window over 1.
  if (keepsState(stage.definition)) return { batchSize: stage.batchSize ?? 32, window: 1 };
  if (backendConcurrency === undefined) return { batchSize: stage.batchSize ?? 32, window: stage.window ?? 8 };
  const window = stage.window ?? 16;
  const batchSize = stage.batchSize ?? Math.min(512, Math.max(1, Math.ceil((4 * backendConcurrency) / window)));
  return { batchSize, window };
}

/**
 * How far a source may run ahead of the stages reading its output (in their consumer groups, whichever process
 * runs them): by default twice what their windows process at once on every partition, so each window has its
 * next chunks waiting while it works and the source runs no further ahead.
 */
export function backlogBound(topology: Topology, source: ResolvedStage, concurrencyOf: (stage: ResolvedStage) => number | undefined): BacklogBound {
  const topic = source.ports['out']!;
  const chains = topologyChains(topology).filter((chain) => chain[0]!.input === topic);
  const capacity = Math.max(0, ...chains.map((chain) => {
    const concurrencies = chain.map(concurrencyOf).filter((c): c is number => c !== undefined);
    const { batchSize, window } = stageTuning(chain[0]!, concurrencies.length ? concurrencies.reduce((a, b) => a + b, 0) : undefined);
    return 2 * source.partitions * window * batchSize;
  }));
  return { topic, groups: chains.map((chain) => chain[0]!.groupId), max: source.maxBacklog ?? capacity };
}

export async function createTopologyTopics(kafka: Kafka, topology: Topology, logger?: Logger): Promise<string[]> {
  const specs = [...topologyTopics(topology)].map(([name, t]) => ({
    name,
    partitions: t.partitions,
    replicationFactor: topology.topics.replicationFactor,
    compacted: t.compacted,
    configs: topology.topics.configs,
  }));
  // Created here too, so that stages whose principal may not create topics find it (ACLs: magpie acls).
  if (!topology.serde.registry) specs.push({ name: topology.serde.schemaTopic, partitions: 1, replicationFactor: topology.topics.replicationFactor, compacted: true, configs: {} });
  return ensureTopics(kafka, specs, logger);
}

/**
 * The topology validates partitions it creates; topics that existed before may have more. A stage that needs
 * one input partition refuses to start on more rather than split or reorder its state.
 */
async function checkSinglePartitionInputs(kafka: Kafka, stages: readonly ResolvedStage[]): Promise<void> {
  const single = stages.filter((s) => s.definition.singlePartitionInput && s.input);
  if (single.length === 0) return;
  const counts = await partitionCounts(kafka, single.map((s) => s.input!));
  for (const s of single) {
    const n = counts.get(s.input!) ?? 1;
    if (n !== 1) throw new ConfigError(`stage ${s.name} (${s.type}) keeps one index over its whole input in arrival order, but its input topic ${s.input} has ${n} partitions: recreate ${s.input} with 1 partition (delete it and let the topology create it, partitions: 1 on the stage that writes it) and reprocess`, { stage: s.name, topic: s.input, partitions: n });
  }
}

export type Runner = StageRunner | SourceRunner;

/** What a refusal by the broker is explained against: the ACLs `magpie acls` generates for these stages. */
export function accessContext(topology: Topology, component: string, stages: readonly ResolvedStage[]): AccessContext {
  const { sasl, ssl } = topology.kafka;
  let principal: string;
  let rules: AclRule[];
  try {
    // One chain (a stage alone is a chain of one) runs as its first stage's principal.
    const acls = topologyAcls(topology, stages.map((s) => s.name));
    principal = acls.length === 1 ? acls[0]!.principal : sasl ? `User:${sasl.username}` : 'User:ANONYMOUS';
    rules = acls.flatMap((a) => a.rules);
  } catch {
    // No principal can be named (TLS client certificates without stage principals): explain without ACLs.
    principal = sasl ? `User:${sasl.username}` : 'the client certificate\'s principal';
    rules = [];
  }
  return { principal, component, rules, tls: Boolean(ssl), sasl: sasl && { mechanism: sasl.mechanism, username: sasl.username } };
}

export interface RunningTopology {
  readonly kafka: Kafka;
  readonly serde: RecordSerde;
  readonly metrics: StageMetrics;
  readonly runners: ReadonlyMap<string, Runner>;
  /** Resolves when every source stage has finished. */
  sourcesFinished(): Promise<void>;
  stop(graceMs?: number): Promise<void>;
}

export interface RunOptions {
  /** Only these stages (by name); all when absent. */
  stages?: string[];
  createTopics?: boolean;
  metrics?: StageMetrics;
  /** Replaces a stage's processor (tests inject faults this way). */
  processorOverrides?: Record<string, Processor<unknown, unknown>>;
  /** Resources the caller owns and closes (a replay shares its own with the stages it wraps); default: the run's own. */
  resources?: Resources;
}

/** Starts the selected stages of a topology in this process. */
export async function runTopology(topology: Topology, logger: Logger, options: RunOptions = {}): Promise<RunningTopology> {
  // A chain runs whole: naming any of its stages runs all of them, in the head's consumer group.
  const chains = topologyChains(topology).filter((chain) => !options.stages || chain.some((s) => options.stages!.includes(s.name)));
  const selected = chains.flat();
  const unknown = (options.stages ?? []).filter((n) => !topology.stages.some((s) => s.name === n));
  if (unknown.length) throw new ConfigError(`no stage named ${unknown.join(', ')} in ${topology.source} (have: ${topology.stages.map((s) => s.name).join(', ')})`);
  const client = createKafka(topology.kafka, logger);
  const runners = new Map<string, Runner>();
  const stopping = new Set<string>();
  // A refusal while the stages start fails the start itself: no caller is listening for 'fatal' yet.
  let refusedAtStart: KafkaAccessError | undefined;
  let started = false;
  // A refused stage stops (its uncommitted chunk is abandoned, so consumed again later) or keeps retrying.
  const deny = (names: readonly string[]) => (err: KafkaAccessError) => {
    if (topology.kafka.onAccessDenied === 'wait') return;
    // Once running, a broker restarting or dying looks like these: logged and retried, never stopped for.
    if (started && isInferredRefusal(err)) return;
    if (!started) refusedAtStart ??= err;
    for (const name of names) {
      const runner = runners.get(name);
      if (!runner || stopping.has(name)) continue;
      stopping.add(name);
      runner.emit('fatal', err);
      void runner.stop(0);
    }
  };
  // The schema store's refusals concern every stage of this process.
  const kafka = guardAccess(client, { context: accessContext(topology, 'magpie', selected), logger, onDenied: deny(selected.map((s) => s.name)) });
  if (options.createTopics !== false) await createTopologyTopics(kafka, topology, logger);
  const serde = createKafkaSerde(kafka, topology.serde, logger);
  const metrics = options.metrics ?? new StageMetrics();
  const ownResources = options.resources === undefined;
  const resources = options.resources ?? new Resources(topology, logger, metrics);
  const closeResources = () => (ownResources ? resources.close() : Promise.resolve());
  let starting: string | undefined;
  const stageKafka = (stage: ResolvedStage): Kafka =>
    guardAccess(client, { context: accessContext(topology, `stage ${stage.name}`, [stage]), logger, onDenied: deny([stage.name]) });
  await checkSinglePartitionInputs(kafka, selected);
  try {
    // A replaced processor does not use its stage's backends: they are not loaded for it.
    await resources.load(selected.filter((s) => !options.processorOverrides?.[s.name]));
    // Downstream stages start first so that a source's first records find their consumers ready.
    for (const chain of [...chains].reverse()) {
      const stage = chain[0]!;
      starting = chain.map((s) => s.name).join(' -> ');
      const deps = resources.depsFor(stage);
      const target = routeTarget(stage);
      const def = stage.definition;
      if (def.kind === 'source') {
        const count = (stage.config as { count?: unknown }).count;
        if (typeof count === 'number') metrics.setSourceTarget(stage.name, count);
        const runner = new SourceRunner(def.create(stage.config as never, deps), {
          kafka: stageKafka(stage), serde, logger, metrics, target, batchSize: stage.batchSize ?? 32, exactlyOnce: stage.exactlyOnce, transactionalIdPrefix: `${stage.groupId}-source`,
          backlog: backlogBound(topology, stage, (s) => resources.backendConcurrency(s)),
        });
        runners.set(stage.name, runner);
        await runner.start();
      } else {
        const processorOf = (s: ResolvedStage) => options.processorOverrides?.[s.name] ?? (s.definition as ProcessorDefinition<never, unknown, unknown>).create(s.config as never, resources.depsFor(s));
        const followers = chain.slice(1).map((s) => ({ processor: processorOf(s), target: routeTarget(s), circuitBreaker: s.circuitBreaker }));
        // A chain's window follows every backend its stages use.
        const concurrencies = chain.map((s) => resources.backendConcurrency(s)).filter((c): c is number => c !== undefined);
        const { batchSize, window } = stageTuning(stage, concurrencies.length ? concurrencies.reduce((a, b) => a + b, 0) : undefined);
        const guarded = guardAccess(client, { context: accessContext(topology, `stage ${starting}`, chain), logger, onDenied: deny(chain.map((s) => s.name)) });
        const runner = new StageRunner(processorOf(stage), {
          kafka: guarded, serde, logger, metrics, target, groupId: stage.groupId, input: stage.input!, batchSize, window,
          concurrency: stage.concurrency, exactlyOnce: stage.exactlyOnce, sessionTimeoutMs: stage.sessionTimeoutMs,
          circuitBreaker: stage.circuitBreaker, followers,
        });
        for (const s of chain) runners.set(s.name, runner);
        await runner.start();
      }
    }
    if (refusedAtStart) throw refusedAtStart;
    started = true;
  } catch (err) {
    logger.fatal({ stage: starting, err: err instanceof Error ? err.message : String(err) }, starting ? `stage ${starting} cannot start` : 'resources cannot be loaded');
    await Promise.allSettled([...runners.values()].map((r) => r.stop(0)));
    await closeResources();
    await serde.close();
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    kafka,
    serde,
    metrics,
    runners,
    sourcesFinished: async () => {
      await Promise.all([...runners.values()].filter((r): r is SourceRunner => r instanceof SourceRunner).map((r) => r.finished()));
    },
    stop: (graceMs = 10_000) =>
      (stopped ??= (async () => {
        // Sources first, so downstream stages can drain what they produced.
        const sources = [...runners.values()].filter((r) => r instanceof SourceRunner);
        await Promise.allSettled(sources.map((r) => r.stop(graceMs)));
        await Promise.allSettled([...runners.values()].filter((r) => !(r instanceof SourceRunner)).map((r) => r.stop(graceMs)));
        await closeResources();
        await serde.close();
      })()),
  };
}
