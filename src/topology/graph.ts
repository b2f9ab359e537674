import type { Type } from 'avsc';
import { defaultSchemaSet, type SchemaSet } from '../serde/avro.js';
import type { SchemaName } from '../serde/schemas.js';
import type { RESERVED_PORTS, ResolvedStage, StageResources, Topology } from './load.js';

/**
 * A topology as one graph: sub-topologies of stages, each stage with its input and output ports, the resources
 * and state stores it uses, and the topics between stages. Validation, `magpie topology show` and its
 * dot/mermaid/json formats all read this object.
 */
export interface TopologyGraph {
  readonly name: string;
  readonly source: string;
  readonly description: string | undefined;
  readonly subTopologies: readonly SubTopology[];
  /** Every topic the topology reads or writes, in first-mention order. */
  readonly topics: readonly GraphTopic[];
  readonly resources: readonly GraphResource[];
}

/**
 * Stages that run together in one consumer group, connected in memory: `a -> b -> c` (stages with `via: memory`
 * join the one before them). Sub-topologies meet at topics.
 */
export interface SubTopology {
  readonly id: number;
  /** The chain's name, its stage names joined by ` -> `. */
  readonly name: string;
  readonly stages: readonly GraphStage[];
}

export interface GraphStage {
  readonly name: string;
  readonly type: string;
  readonly kind: 'source' | 'processor';
  readonly input: { readonly topic: string; readonly schema: SchemaName } | undefined;
  /** Every output: 'out', the type's extra ports, then 'rejects' and 'dead-letter'. */
  readonly ports: readonly GraphPort[];
  readonly uses: StageResources;
  readonly stores: readonly StateStore[];
  /** Undefined: follows from the stage's backends when it runs (build.ts, stageTuning). */
  readonly batchSize: number | undefined;
  /** Chunks of one input partition in flight (processors only; undefined: follows from the backends). */
  readonly window: number | undefined;
  readonly concurrency: number;
  readonly exactlyOnce: boolean;
  /** Its output is read outside the topology: the last stage's, or one declared with `sink: true`. */
  readonly sink: boolean;
}

/** What leaves a stage: its main output, an extra output of its type, or a failure output every stage has. */
export type PortKind = 'out' | 'extra' | 'rejects' | 'dead-letter';

export interface GraphPort {
  readonly name: string;
  readonly kind: PortKind;
  readonly topic: string;
  readonly schema: SchemaName;
}

/** State a stage keeps, rebuilt on start from its compacted changelog topic. */
export interface StateStore {
  readonly name: string;
  readonly changelog: string;
}

export interface GraphTopic {
  readonly name: string;
  readonly partitions: number;
  readonly compacted: boolean;
  readonly writers: readonly { readonly stage: string; readonly port: string; readonly kind: PortKind; readonly schema: SchemaName }[];
  readonly readers: readonly { readonly stage: string; readonly schema: SchemaName }[];
}

export type ResourceKind = 'backend' | 'embedder' | 'reward';

export interface GraphResource {
  readonly kind: ResourceKind;
  readonly name: string;
  /** One line on what it is: backend type and model, embedder model, reward API and model. */
  readonly summary: string;
  readonly usedBy: readonly string[];
}

const REJECTS: (typeof RESERVED_PORTS)[number] = 'rejects';
const DEAD_LETTER: (typeof RESERVED_PORTS)[number] = 'dead-letter';

export function buildGraph(topology: Topology): TopologyGraph {
  const topics = new Map<string, { name: string; partitions: number; compacted: boolean; writers: GraphTopic['writers'][number][]; readers: GraphTopic['readers'][number][] }>();
  const topic = (name: string, partitions: number, compacted = false) => {
    let t = topics.get(name);
    if (!t) topics.set(name, (t = { name, partitions, compacted, writers: [], readers: [] }));
    return t;
  };
  const nodes = topology.stages.map((stage, i): GraphStage => {
    if (stage.input) topic(stage.input, topology.topics.partitions).readers.push({ stage: stage.name, schema: stage.inputSchema! });
    const ports: GraphPort[] = [];
    const stores: StateStore[] = [];
    for (const [port, name] of Object.entries(stage.ports)) {
      const compacted = port !== 'out' && Boolean(stage.definition.extraPorts?.[port]?.compacted);
      ports.push({ name: port, kind: port === 'out' ? 'out' : 'extra', topic: name, schema: stage.portSchemas[port]! });
      if (compacted) stores.push({ name: `${stage.name}.${port}`, changelog: name });
      topic(name, compacted ? 1 : stage.partitions, compacted);
    }
    ports.push({ name: REJECTS, kind: 'rejects', topic: stage.rejects, schema: 'magpie.Rejected' });
    ports.push({ name: DEAD_LETTER, kind: 'dead-letter', topic: stage.deadLetter, schema: 'magpie.DeadLetter' });
    for (const p of ports) topic(p.topic, topology.topics.partitions).writers.push({ stage: stage.name, port: p.name, kind: p.kind, schema: p.schema });
    const node: GraphStage = {
      name: stage.name,
      type: stage.type,
      kind: stage.definition.kind,
      input: stage.input ? { topic: stage.input, schema: stage.inputSchema! } : undefined,
      ports,
      uses: stage.uses,
      stores,
      batchSize: stage.batchSize,
      // Processors only. One with state runs one chunk at a time (load.ts refuses more, build.ts sets 1).
      window: stage.definition.kind === 'source' ? undefined : stores.length > 0 ? 1 : stage.window,
      concurrency: stage.concurrency,
      exactlyOnce: stage.exactlyOnce,
      sink: stage.sink || i === topology.stages.length - 1,
    };
    return node;
  });
  // A stage chained in memory joins the sub-topology of the stage before it.
  const nodeOf = new Map(topology.stages.map((stage, i) => [stage, nodes[i]!]));
  const subTopologies = topologyChains(topology).map((chain, id) => subTopology(id, chain.map((stage) => nodeOf.get(stage)!)));
  const usedBy = (kind: keyof StageResources, name: string) => topology.stages.filter((s) => s.uses[kind].includes(name)).map((s) => s.name);
  const resources: GraphResource[] = [
    ...Object.entries(topology.backends).map(([name, b]): GraphResource => ({ kind: 'backend', name, summary: `${b.type} ${b.model ?? ''}`.trim(), usedBy: usedBy('backends', name) })),
    ...Object.entries(topology.embedders).map(([name, e]): GraphResource => ({ kind: 'embedder', name, summary: e.model, usedBy: usedBy('embedders', name) })),
    ...Object.entries(topology.rewards).map(([name, r]): GraphResource => ({ kind: 'reward', name, summary: `${r.api} ${r.model}`, usedBy: usedBy('rewards', name) })),
  ];
  return { name: topology.name, source: topology.source, description: topology.description, subTopologies, topics: [...topics.values()], resources };
}

/**
 * The chains of a topology: each stage with the stages chained after it in memory (`via: memory`), in order.
 * A stage that is not chained is a chain of one.
 */
export function topologyChains(topology: Pick<Topology, 'stages'>): ResolvedStage[][] {
  const chains: ResolvedStage[][] = [];
  for (const stage of topology.stages) {
    if (stage.via === 'memory' && chains.length > 0) chains.at(-1)!.push(stage);
    else chains.push([stage]);
  }
  return chains;
}

/** A sub-topology of stages connected in memory, in order; named like a Flink chain. */
export function subTopology(id: number, stages: readonly GraphStage[]): SubTopology {
  return { id, name: stages.map((s) => s.name).join(' -> '), stages };
}

export function graphStages(graph: TopologyGraph): GraphStage[] {
  return graph.subTopologies.flatMap((s) => s.stages);
}

/**
 * Checks every edge: the record type a stage reads from a topic must be readable from what each stage writing
 * that topic writes (Avro schema resolution). Warns about an output nothing reads, unless it is meant to be
 * read outside the topology: a sink (the last stage's output, or a stage's with `sink: true`), rejects, dead
 * letters and changelogs.
 */
export function checkGraph(graph: TopologyGraph, schemas: SchemaSet = defaultSchemaSet()): { problems: string[]; warnings: string[] } {
  const problems: string[] = [];
  const warnings: string[] = [];
  const stages = graphStages(graph);
  const sinks = new Set(stages.filter((s) => s.sink).map((s) => s.ports.find((p) => p.kind === 'out')?.topic));
  for (const t of graph.topics) {
    for (const reader of t.readers) {
      for (const writer of t.writers) {
        const why = unreadable(schemas.getType(reader.schema), schemas.getType(writer.schema));
        if (why !== undefined) {
          problems.push(
            `stage ${reader.stage} reads ${reader.schema} from topic ${t.name}, but stage ${writer.stage} writes ${writer.schema} there (port ${writer.port}), ` +
              `which ${reader.schema} cannot read (${why}): give ${reader.stage} an input of ${reader.schema} records`,
          );
        }
      }
    }
    if (t.readers.length > 0 || t.compacted || sinks.has(t.name)) continue;
    for (const writer of t.writers.filter((w) => w.kind === 'out' || w.kind === 'extra')) {
      warnings.push(`stage ${writer.stage} writes topic ${t.name} (port ${writer.port}) and no stage of the topology reads it: read it, or mark the stage \`sink: true\` if consumers outside the topology do`);
    }
  }
  return { problems, warnings };
}

/** Why `reader` cannot read records written with `writer`, or undefined when it can. */
function unreadable(reader: Type, writer: Type): string | undefined {
  try {
    reader.createResolver(writer);
    return undefined;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  }
}
