import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { CircuitBreakerOptions } from '../core/circuit-breaker.js';
import { ConfigError } from '../core/errors.js';
import { backendConfigSchema, type BackendConfig } from '../inference/factory.js';
import { embedderConfigSchema, type EmbedderConfig } from '../embedding/transformers.js';
import { rewardConfigSchema, type RewardConfig } from '../inference/reward.js';
import { STAGE_DEFINITIONS } from '../processors/registry.js';
import type { AnyStageDefinition } from '../processors/stage.js';
import type { SchemaName } from '../serde/schemas.js';
import { buildGraph, checkGraph } from './graph.js';
import { interpolateEnv } from './interpolate.js';
import {
  commonStageFields,
  stageBaseSchema,
  topologySchema,
  type KafkaConfig,
  type RetryConfig,
  type SerdeConfig,
  type TopicsConfig,
} from './schema.js';

export interface ResolvedStage {
  readonly name: string;
  readonly type: string;
  readonly definition: AnyStageDefinition;
  /** Record type read from `input` (processors only). */
  readonly inputSchema: SchemaName | undefined;
  /** Record type written to each port's topic. */
  readonly portSchemas: Readonly<Record<string, SchemaName>>;
  /** The topology resources the stage uses, by name, from its definition's `uses`. */
  readonly uses: StageResources;
  /** Full topic names, prefix applied. */
  readonly input: string | undefined;
  /** Port name → topic; always has 'out'. */
  readonly ports: Readonly<Record<string, string>>;
  readonly rejects: string;
  readonly deadLetter: string;
  readonly groupId: string;
  readonly partitions: number;
  /** Unset: follows from the stage's backend (see build.ts). */
  readonly batchSize: number | undefined;
  readonly window: number | undefined;
  /** Sources: the readers' backlog the source waits at (undefined: derived from the readers' windows). */
  readonly maxBacklog: number | undefined;
  readonly concurrency: number;
  /** 'memory': chained after the stage before it (see schema.ts). */
  readonly via: 'topic' | 'memory';
  /** Its output is read outside the topology (see schema.ts). */
  readonly sink: boolean;
  readonly exactlyOnce: boolean;
  readonly retry: RetryConfig;
  readonly deadLetterAfterAttempts: number;
  readonly circuitBreaker: CircuitBreakerOptions;
  readonly sessionTimeoutMs: number;
  /** The stage's own validated fields (common ones included). */
  readonly config: Record<string, unknown>;
}

/** Names of the topology's backends, embedders and rewards that one stage uses. */
export interface StageResources {
  readonly backends: readonly string[];
  readonly embedders: readonly string[];
  readonly rewards: readonly string[];
}

/** Output ports every stage has besides the definition's: a stage's type cannot declare or take these names. */
export const RESERVED_PORTS = ['out', 'rejects', 'dead-letter'] as const;

export interface Topology {
  readonly name: string;
  readonly description: string | undefined;
  readonly source: string;
  readonly kafka: KafkaConfig;
  readonly serde: SerdeConfig;
  readonly topics: TopicsConfig;
  readonly backends: Readonly<Record<string, BackendConfig>>;
  readonly embedders: Readonly<Record<string, EmbedderConfig>>;
  readonly rewards: Readonly<Record<string, RewardConfig>>;
  readonly stages: readonly ResolvedStage[];
  /** What loads but looks unintended, e.g. an output topic no stage reads; printed by the CLI. */
  readonly warnings: readonly string[];
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Overrides topics.prefix (tests run each case under a fresh prefix). */
  topicPrefix?: string;
  /** Overrides kafka.brokers. */
  brokers?: string[];
  /** Stage types the topology may name; default: every stage of src/processors/registry.ts. */
  definitions?: readonly AnyStageDefinition[];
}

/** `stages[2].model` style path, the way a user reads their YAML. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part)), '');
}

function issuesOf(error: z.ZodError, prefix: readonly PropertyKey[] = []): string[] {
  return error.issues.map((issue) => `${formatPath([...prefix, ...issue.path]) || '(root)'}: ${issue.message}`);
}

export async function loadTopologyFile(file: string, options: LoadOptions = {}): Promise<Topology> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read topology file (${(err as Error).message})`, { file });
  }
  return parseTopology(text, file, options);
}

export function parseTopology(text: string, source: string, options: LoadOptions = {}): Topology {
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(`${source}: not valid YAML: ${(err as Error).message}`, { file: source });
  }
  let interpolated: unknown;
  try {
    interpolated = interpolateEnv(doc, options.env ?? process.env);
  } catch (err) {
    throw new ConfigError(`${source}: ${(err as Error).message}`, { file: source });
  }
  const problems: string[] = [];
  const top = topologySchema.safeParse(interpolated);
  if (!top.success) throw invalid(source, issuesOf(top.error));
  const t = top.data;
  if (options.brokers) t.kafka.brokers = options.brokers;
  const topics = { ...t.topics, prefix: options.topicPrefix ?? t.topics.prefix };
  const topic = (name: string) => `${topics.prefix}${name}`;

  const backends: Record<string, BackendConfig> = {};
  for (const [name, raw] of Object.entries(t.backends)) {
    const parsed = backendConfigSchema.safeParse(raw);
    if (parsed.success) backends[name] = parsed.data;
    else problems.push(...issuesOf(parsed.error, ['backends', name]));
  }
  const embedders: Record<string, EmbedderConfig> = {};
  for (const [name, raw] of Object.entries(t.embedders)) {
    const parsed = embedderConfigSchema.safeParse(raw);
    if (parsed.success) embedders[name] = parsed.data;
    else problems.push(...issuesOf(parsed.error, ['embedders', name]));
  }

  const rewards: Record<string, RewardConfig> = {};
  for (const [name, raw] of Object.entries(t.rewards)) {
    const parsed = rewardConfigSchema.safeParse(raw);
    if (parsed.success) rewards[name] = parsed.data;
    else problems.push(...issuesOf(parsed.error, ['rewards', name]));
  }
  const declared = { backends: t.backends, embedders: t.embedders, rewards: t.rewards };
  const definitions = options.definitions ?? STAGE_DEFINITIONS;

  const stages: ResolvedStage[] = [];
  const seen = new Set<string>();
  t.stages.forEach((raw, i) => {
    const base = stageBaseSchema.safeParse(raw);
    if (!base.success) return void problems.push(...issuesOf(base.error, ['stages', i]));
    const definition = definitions.find((d) => d.type === base.data.type);
    if (!definition) {
      const known = definitions.map((d) => d.type).join(', ');
      return void problems.push(`stages[${i}].type: unknown stage type '${base.data.type}' (known: ${known})`);
    }
    const full = z.object({ ...commonStageFields, ...definition.config.shape }).strict().safeParse(raw);
    if (!full.success) return void problems.push(...issuesOf(full.error, ['stages', i]));
    const s = full.data as z.infer<typeof stageBaseSchema> & Record<string, unknown>;
    if (seen.has(s.name)) problems.push(`stages[${i}].name: duplicate stage name '${s.name}'`);
    seen.add(s.name);
    if (definition.kind === 'processor' && !s.input) problems.push(`stages[${i}].input: stage type '${s.type}' consumes a topic; give input`);
    if (definition.kind === 'source' && s.input) problems.push(`stages[${i}].input: stage type '${s.type}' is a source and takes no input`);
    if (definition.kind === 'processor' && s.maxBacklog !== undefined) problems.push(`stages[${i}].maxBacklog: only a source bounds the backlog it writes; stage type '${s.type}' reads a topic (remove maxBacklog)`);
    const extraPorts = Object.keys(definition.extraPorts ?? {});
    const defaultPorts: Record<string, string> = {};
    for (const [port, spec] of Object.entries(definition.extraPorts ?? {})) {
      if (!s.ports[port] && spec.defaultSuffix !== undefined) defaultPorts[port] = topic(`${s.output}${spec.defaultSuffix}`);
      else if (!s.ports[port]) problems.push(`stages[${i}].ports.${port}: stage type '${s.type}' needs a topic for its '${port}' port`);
    }
    if (keepsState(definition) && s.window !== undefined && s.window > 1) {
      problems.push(`stages[${i}].window: stage type '${s.type}' keeps state and processes one chunk at a time; remove window or set it to 1`);
    }
    for (const port of Object.keys(s.ports)) {
      if ((RESERVED_PORTS as readonly string[]).includes(port)) problems.push(`stages[${i}].ports.${port}: '${port}' is a port of every stage; set its topic with ${port === 'out' ? 'output' : port === 'rejects' ? 'rejects' : 'deadLetter'}`);
      else if (!extraPorts.includes(port)) problems.push(`stages[${i}].ports.${port}: stage type '${s.type}' has no port '${port}' (${extraPorts.length ? `its ports: ${extraPorts.join(', ')}` : 'it has no extra ports'})`);
    }
    const wanted = definition.uses?.(s as never) ?? {};
    const uses: StageResources = { backends: unique(wanted.backends), embedders: unique(wanted.embedders), rewards: unique(wanted.rewards) };
    for (const kind of ['backends', 'embedders', 'rewards'] as const) {
      for (const ref of uses[kind]) {
        if (!(ref in declared[kind])) {
          const have = Object.keys(declared[kind]).join(', ') || 'none';
          problems.push(`stages[${i}] (${s.name}): uses ${kind.slice(0, -1)} '${ref}', which is not declared under ${kind} (have: ${have})`);
        }
      }
    }
    const fromConfig = definition.schemasFromConfig?.(s as never);
    const portSchemas: Record<string, SchemaName> = { out: fromConfig?.output ?? definition.outputSchema };
    for (const [port, spec] of Object.entries(definition.extraPorts ?? {})) portSchemas[port] = spec.schema;
    stages.push({
      name: s.name,
      type: s.type,
      definition,
      inputSchema: definition.kind === 'processor' ? (fromConfig?.input ?? definition.inputSchema) : undefined,
      portSchemas,
      uses,
      input: s.input === undefined ? undefined : topic(s.input),
      ports: { out: topic(s.output), ...defaultPorts, ...Object.fromEntries(Object.entries(s.ports).map(([p, name]) => [p, topic(name)])) },
      rejects: topic(s.rejects ?? topics.rejects),
      deadLetter: topic(s.deadLetter ?? topics.deadLetter),
      groupId: `${topics.prefix}${t.name}.${s.name}`,
      partitions: s.partitions ?? topics.partitions,
      batchSize: s.batchSize,
      window: s.window,
      maxBacklog: s.maxBacklog,
      concurrency: s.concurrency,
      via: s.via,
      sink: s.sink,
      exactlyOnce: s.exactlyOnce,
      retry: s.retry,
      deadLetterAfterAttempts: s.deadLetterAfterAttempts,
      circuitBreaker: s.circuitBreaker,
      sessionTimeoutMs: s.sessionTimeoutMs,
      config: s,
    });
  });
  problems.push(...singlePartitionProblems(stages, topics.partitions), ...chainProblems(stages));
  if (problems.length) throw invalid(source, problems);
  const topology = { name: t.name, description: t.description, source, kafka: t.kafka, serde: t.serde, topics, backends, embedders, rewards, stages, warnings: [] };
  const checked = checkGraph(buildGraph(topology));
  if (checked.problems.length) throw invalid(source, checked.problems);
  return { ...topology, warnings: checked.warnings.map((w) => `${source}: ${w}`) };
}

function unique(names: readonly string[] | undefined): string[] {
  return [...new Set(names ?? [])];
}

/** A stage keeps state (a compacted changelog port, or one index over its input). */
export function keepsState(definition: AnyStageDefinition): boolean {
  return Boolean(definition.singlePartitionInput) || Object.values(definition.extraPorts ?? {}).some((p) => p.compacted);
}

/**
 * `via: memory` chains a stage after the one before it, as Flink chains operators: only where a topic buys
 * nothing. The stage before must be a processor without state whose output this stage alone reads, with the
 * same exactly-once setting; the chain then runs in the head's consumer group, one transaction per chunk.
 */
function chainProblems(stages: readonly ResolvedStage[]): string[] {
  const problems: string[] = [];
  stages.forEach((s, i) => {
    if (s.via !== 'memory') return;
    const at = `stages[${i}].via`;
    const prev = stages[i - 1];
    if (!prev) return void problems.push(`${at}: the first stage has no stage before it to chain after; remove via`);
    if (prev.definition.kind !== 'processor') return void problems.push(`${at}: ${prev.name} is a source, which runs on its own; read its topic (remove via)`);
    if (prev.ports['out'] !== s.input) return void problems.push(`${at}: ${s.name} reads ${s.input}, but ${prev.name} before it writes ${prev.ports['out']}; chain only after the stage whose output you read`);
    const readers = stages.filter((r) => r.input === s.input).map((r) => r.name);
    if (readers.length > 1) problems.push(`${at}: ${s.input} is read by ${readers.join(', ')}; a chained topic must have one reader (remove via, and the topic carries it)`);
    if (keepsState(s.definition) || keepsState(prev.definition)) problems.push(`${at}: ${keepsState(s.definition) ? s.name : prev.name} keeps state, which needs a topic of its own; remove via`);
    if (s.exactlyOnce !== prev.exactlyOnce) problems.push(`${at}: ${s.name} and ${prev.name} differ in exactlyOnce; a chain commits once for all its stages`);
    // The chain runs in its first stage's process, connecting as that stage's principal (magpie acls).
    let h = i - 1;
    while (h > 0 && stages[h]!.via === 'memory') h--;
    const head = stages[h]!;
    const principal = s.config['principal'];
    if (principal !== undefined && principal !== head.config['principal']) {
      problems.push(`stages[${i}].principal: ${s.name} runs in the chain of ${head.name}, as its principal (${String(head.config['principal'] ?? "the topology's user")}); remove principal, or give ${head.name} the same one`);
    }
    for (const field of ['batchSize', 'window'] as const) {
      if (s[field] !== undefined) problems.push(`stages[${i}].${field}: ${s.name} runs in the chunks of the chain it is in; set ${field} on the chain's first stage instead`);
    }
  });
  return problems;
}

/** A stage with one state over its input in arrival order needs one input partition, one at a time, exactly-once. */
function singlePartitionProblems(stages: readonly ResolvedStage[], defaultPartitions: number): string[] {
  const problems: string[] = [];
  stages.forEach((s, i) => {
    if (!s.definition.singlePartitionInput) return;
    const why = `stage type '${s.type}' keeps one index over its whole input in arrival order`;
    if (s.concurrency !== 1) problems.push(`stages[${i}].concurrency: ${why}; set concurrency: 1 (one instance keeps up; more partitions or concurrency would split or reorder it)`);
    if (!s.exactlyOnce) problems.push(`stages[${i}].exactlyOnce: ${why} and writes it to a changelog with its outputs; remove exactlyOnce: false`);
    const writer = stages.findIndex((w) => w.ports['out'] === s.input);
    const partitions = writer >= 0 ? stages[writer]!.partitions : defaultPartitions;
    if (partitions !== 1) {
      problems.push(writer >= 0
        ? `stages[${writer}].partitions: ${stages[writer]!.name} writes ${s.input}, the input of stage '${s.name}': ${why}, so ${s.input} needs 1 partition; set partitions: 1 on stage '${stages[writer]!.name}'`
        : `stages[${i}].input: ${why}, so ${s.input} needs 1 partition, and topics.partitions is ${partitions}; create it with one partition, or set topics.partitions: 1`);
    }
  });
  return problems;
}

function invalid(source: string, problems: string[]): ConfigError {
  const lines = problems.map((p) => `${source}: ${p}`);
  return new ConfigError(lines.join('\n'), { file: source, problems });
}

/** All topics a topology reads or writes, with whether they are compacted. */
export function topologyTopics(topology: Topology): Map<string, { compacted: boolean; partitions: number }> {
  return new Map(buildGraph(topology).topics.map((t) => [t.name, { compacted: t.compacted, partitions: t.partitions }]));
}
