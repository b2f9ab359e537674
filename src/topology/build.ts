import type { Kafka } from 'kafkajs';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { StageMetrics } from '../core/metrics.js';
import type { Embedder } from '../embedding/embedder.js';
import { createEmbedder } from '../embedding/transformers.js';
import type { InferenceBackend } from '../inference/backend.js';
import { createBackend } from '../inference/factory.js';
import { instrumentBackend } from '../inference/instrumented.js';
import { ensureTopics } from '../kafka/admin.js';
import { createKafka } from '../kafka/client.js';
import type { RouteTarget } from '../kafka/route.js';
import { SourceRunner } from '../kafka/source-runner.js';
import { StageRunner } from '../kafka/stage-runner.js';
import type { Processor, StageDeps } from '../processors/stage.js';
import type { SchemaName } from '../serde/schemas.js';
import { createSerde, type RecordSerde } from '../serde/serde.js';
import { topologyTopics, type ResolvedStage, type Topology } from './load.js';

/** Input and per-port schemas of a stage, from its definition (and config, for schema-agnostic stages). */
export function stageSchemas(stage: ResolvedStage): { input: SchemaName | undefined; ports: Record<string, SchemaName> } {
  const def = stage.definition;
  const fromConfig = def.schemasFromConfig?.(stage.config as never);
  const input = def.kind === 'processor' ? (fromConfig?.input ?? def.inputSchema) : undefined;
  const ports: Record<string, SchemaName> = { out: fromConfig?.output ?? def.outputSchema };
  for (const [port, spec] of Object.entries(def.extraPorts ?? {})) ports[port] = spec.schema;
  return { input, ports };
}

export function routeTarget(stage: ResolvedStage): RouteTarget {
  const schemas = stageSchemas(stage);
  return {
    name: stage.name,
    inputSchema: schemas.input,
    ports: stage.ports,
    portSchemas: schemas.ports,
    rejects: stage.rejects,
    deadLetter: stage.deadLetter,
    retry: stage.retry,
    deadLetterAfterAttempts: stage.deadLetterAfterAttempts,
  };
}

/**
 * Backends and embedders of one process: each is loaded once, before the stages that name it are created,
 * and shared by them (one model in memory, one connection pool per server).
 */
export class Resources {
  private readonly backends = new Map<string, InferenceBackend>();
  private readonly embedders = new Map<string, Embedder>();

  constructor(
    private readonly topology: Topology,
    private readonly logger: Logger,
    private readonly metrics?: StageMetrics,
  ) {}

  /** Loads what the given stages reference (their `backend`, `judge` and `embedder` fields). */
  async load(stages: readonly ResolvedStage[]): Promise<void> {
    for (const stage of stages) {
      for (const field of ['backend', 'judge'] as const) {
        const name = stage.config[field];
        if (typeof name === 'string' && !this.backends.has(name)) {
          const config = this.topology.backends[name];
          if (!config) throw new ConfigError(`stage ${stage.name}: no backend named '${name}'`);
          const backend = await createBackend(name, config, this.logger);
          this.backends.set(name, this.metrics ? instrumentBackend(name, backend, this.metrics) : backend);
        }
      }
      const name = stage.config['embedder'];
      if (typeof name === 'string' && !this.embedders.has(name)) {
        const config = this.topology.embedders[name];
        if (!config) throw new ConfigError(`stage ${stage.name}: no embedder named '${name}'`);
        this.embedders.set(name, await createEmbedder(config));
      }
    }
  }

  depsFor(stageName: string): StageDeps {
    return {
      stageName,
      logger: this.logger.child({ stage: stageName }),
      backend: (name) => {
        const backend = this.backends.get(name);
        if (!backend) throw new ConfigError(`stage ${stageName}: backend '${name}' is not loaded (name it in the stage's backend field)`);
        return backend;
      },
      embedder: (name) => {
        const embedder = this.embedders.get(name);
        if (!embedder) throw new ConfigError(`stage ${stageName}: embedder '${name}' is not loaded (name it in the stage's embedder field)`);
        return embedder;
      },
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.backends.values()].map((b) => b.close()));
    await Promise.allSettled([...this.embedders.values()].map((e) => e.close()));
  }
}

export async function createTopologyTopics(kafka: Kafka, topology: Topology, logger?: Logger): Promise<string[]> {
  const specs = [...topologyTopics(topology)].map(([name, t]) => ({
    name,
    partitions: t.partitions,
    replicationFactor: topology.topics.replicationFactor,
    compacted: t.compacted,
    configs: topology.topics.configs,
  }));
  return ensureTopics(kafka, specs, logger);
}

export type Runner = StageRunner | SourceRunner;

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
}

/** Starts the selected stages of a topology in this process. */
export async function runTopology(topology: Topology, logger: Logger, options: RunOptions = {}): Promise<RunningTopology> {
  const selected = options.stages ? topology.stages.filter((s) => options.stages!.includes(s.name)) : topology.stages;
  const unknown = (options.stages ?? []).filter((n) => !topology.stages.some((s) => s.name === n));
  if (unknown.length) throw new ConfigError(`no stage named ${unknown.join(', ')} in ${topology.source} (have: ${topology.stages.map((s) => s.name).join(', ')})`);
  const kafka = createKafka(topology.kafka, logger);
  if (options.createTopics !== false) await createTopologyTopics(kafka, topology, logger);
  const serde = await createSerde({ kafka, config: topology.serde, logger });
  const metrics = options.metrics ?? new StageMetrics();
  const resources = new Resources(topology, logger, metrics);
  const runners = new Map<string, Runner>();
  try {
    // A replaced processor does not use its stage's backends: they are not loaded for it.
    await resources.load(selected.filter((s) => !options.processorOverrides?.[s.name]));
    // Downstream stages start first so that a source's first records find their consumers ready.
    for (const stage of [...selected].reverse()) {
      const deps = resources.depsFor(stage.name);
      const target = routeTarget(stage);
      const def = stage.definition;
      if (def.kind === 'source') {
        const count = (stage.config as { count?: unknown }).count;
        if (typeof count === 'number') metrics.setSourceTarget(stage.name, count);
        const runner = new SourceRunner(def.create(stage.config as never, deps), {
          kafka, serde, logger, metrics, target, batchSize: stage.batchSize, exactlyOnce: stage.exactlyOnce, transactionalId: `${stage.groupId}-source`,
        });
        runners.set(stage.name, runner);
        await runner.start();
      } else {
        const processor = options.processorOverrides?.[stage.name] ?? def.create(stage.config as never, deps);
        const runner = new StageRunner(processor, {
          kafka, serde, logger, metrics, target, groupId: stage.groupId, input: stage.input!, batchSize: stage.batchSize,
          concurrency: stage.concurrency, exactlyOnce: stage.exactlyOnce, sessionTimeoutMs: stage.sessionTimeoutMs, portSchemas: target.portSchemas,
          circuitBreaker: stage.circuitBreaker,
        });
        runners.set(stage.name, runner);
        await runner.start();
      }
    }
  } catch (err) {
    await Promise.allSettled([...runners.values()].map((r) => r.stop(0)));
    await resources.close();
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
        await resources.close();
        await serde.close();
      })()),
  };
}
