import type { GraphPort, GraphStage, GraphTopic, ResourceKind, TopologyGraph } from './graph.js';

/** Output formats of `magpie topology show`. */
export type GraphFormat = 'text' | 'dot' | 'mermaid' | 'json';

export function renderGraph(graph: TopologyGraph, format: GraphFormat): string {
  switch (format) {
    case 'text':
      return describeText(graph);
    case 'dot':
      return describeDot(graph);
    case 'mermaid':
      return describeMermaid(graph);
    case 'json':
      return JSON.stringify(graph, null, 2);
  }
}

const RESOURCE_FIELD = { backend: 'backends', embedder: 'embedders', reward: 'rewards' } as const satisfies Record<ResourceKind, string>;

function usesOf(stage: GraphStage): string[] {
  return (['backends', 'embedders', 'rewards'] as const).filter((k) => stage.uses[k].length).map((k) => `${k}: [${stage.uses[k].join(', ')}]`);
}

function sinkName(stage: GraphStage, port: GraphPort): string {
  return `${stage.name}.${port.name}`;
}

/**
 * Kafka Streams' TopologyDescription layout: per sub-topology a source node per input topic, the stages as
 * processors, a sink node per output port; `-->` names a node's successors, `<--` its predecessors.
 */
export function describeText(graph: TopologyGraph): string {
  const lines = [`Topology: ${graph.name} (${graph.source})`];
  if (graph.description) lines.push(`  ${graph.description.trim()}`);
  lines.push('Sub-topologies:');
  for (const sub of graph.subTopologies) {
    lines.push(`  Sub-topology: ${sub.id} [${sub.name}]`);
    sub.stages.forEach((stage, i) => {
      const previous = sub.stages[i - 1];
      const next = sub.stages[i + 1];
      const sinks = stage.ports.filter((p) => !(next && p.kind === 'out')).map((p) => sinkName(stage, p));
      if (stage.input && !previous) {
        lines.push(`    Source: ${stage.name}.source (topic: ${stage.input.topic} <${stage.input.schema}>)`);
        lines.push(`      --> ${stage.name}`);
      }
      const details = [
        `type: ${stage.type}`,
        `batch ${stage.batchSize ?? 'auto'}, ${stage.kind === 'processor' ? `window ${stage.window ?? 'auto'}, ` : ''}concurrency ${stage.concurrency}, ${stage.exactlyOnce ? 'exactly-once' : 'at-least-once'}`,
        ...usesOf(stage),
        `stores: [${stage.stores.map((s) => s.name).join(', ')}]`,
      ];
      lines.push(`    ${stage.kind === 'source' ? 'Generator' : 'Processor'}: ${stage.name} (${details.join('; ')})`);
      lines.push(`      --> ${[...(next ? [next.name] : []), ...sinks].join(', ')}`);
      if (stage.input) lines.push(`      <-- ${previous ? previous.name : `${stage.name}.source`}`);
      for (const port of stage.ports.filter((p) => !(next && p.kind === 'out'))) {
        lines.push(`    Sink: ${sinkName(stage, port)} (topic: ${port.topic} <${port.schema}>)`);
        lines.push(`      <-- ${stage.name}`);
      }
    });
  }
  lines.push('Topics:');
  for (const t of graph.topics) lines.push(`  ${t.name} (${topicNote(t)})`);
  if (graph.resources.length) {
    lines.push('Resources:');
    for (const r of graph.resources) lines.push(`  ${RESOURCE_FIELD[r.kind]}.${r.name}: ${r.summary} (used by: ${r.usedBy.join(', ') || 'no stage'})`);
  }
  return lines.join('\n');
}

function topicNote(t: GraphTopic): string {
  const writers = t.writers.map((w) => `${w.stage}.${w.port}`);
  const readers = t.readers.map((r) => r.stage);
  return [
    `${t.partitions} partition${t.partitions === 1 ? '' : 's'}${t.compacted ? ', compacted' : ''}`,
    `written by ${writers.join(', ') || 'outside the topology'}`,
    `read by ${readers.join(', ') || 'outside the topology'}`,
  ].join('; ');
}

/** Node ids for dot and mermaid: names have dots and dashes, ids must not. */
function ids(graph: TopologyGraph): { stage: (name: string) => string; topic: (name: string) => string; resource: (kind: ResourceKind, name: string) => string } {
  const topics = new Map(graph.topics.map((t, i) => [t.name, `t${i}`]));
  const resources = new Map(graph.resources.map((r, i) => [`${r.kind}:${r.name}`, `r${i}`]));
  const stages = new Map(graph.subTopologies.flatMap((s) => s.stages).map((s, i) => [s.name, `s${i}`]));
  return { stage: (n) => stages.get(n)!, topic: (n) => topics.get(n)!, resource: (k, n) => resources.get(`${k}:${n}`)! };
}

const FAILURE_PORTS = new Set(['rejects', 'dead-letter']);

function resourceEdges(graph: TopologyGraph): { kind: ResourceKind; name: string; stage: string }[] {
  return graph.resources.flatMap((r) => r.usedBy.map((stage) => ({ kind: r.kind, name: r.name, stage })));
}

/** Graphviz: sub-topologies as clusters, topics as ellipses, failure outputs dashed, resources as dotted edges. */
export function describeDot(graph: TopologyGraph): string {
  const id = ids(graph);
  const q = (s: string) => JSON.stringify(s);
  const lines = [`digraph ${q(graph.name)} {`, '  rankdir=LR;', '  node [fontname="Helvetica"];'];
  for (const sub of graph.subTopologies) {
    lines.push(`  subgraph cluster_${sub.id} {`, `    label=${q(`${sub.id}: ${sub.name}`)};`, '    style=rounded;');
    for (const s of sub.stages) lines.push(`    ${id.stage(s.name)} [shape=box, label=${q(`${s.name}\n${s.type}`)}];`);
    lines.push('  }');
  }
  for (const t of graph.topics) lines.push(`  ${id.topic(t.name)} [shape=ellipse, label=${q(t.name)}${t.compacted ? ', peripheries=2' : ''}];`);
  for (const r of graph.resources) lines.push(`  ${id.resource(r.kind, r.name)} [shape=component, label=${q(`${r.kind} ${r.name}\n${r.summary}`)}];`);
  for (const s of graph.subTopologies.flatMap((x) => x.stages)) {
    if (s.input) lines.push(`  ${id.topic(s.input.topic)} -> ${id.stage(s.name)} [label=${q(s.input.schema)}];`);
    for (const p of s.ports) lines.push(`  ${id.stage(s.name)} -> ${id.topic(p.topic)} [label=${q(p.name)}${FAILURE_PORTS.has(p.name) ? ', style=dashed' : ''}];`);
  }
  for (const e of resourceEdges(graph)) lines.push(`  ${id.resource(e.kind, e.name)} -> ${id.stage(e.stage)} [style=dotted, arrowhead=none];`);
  lines.push('}');
  return lines.join('\n');
}

/** Mermaid flowchart: the same graph as dot, for Markdown. */
export function describeMermaid(graph: TopologyGraph): string {
  const id = ids(graph);
  const q = (s: string) => `"${s.replaceAll('"', '#quot;')}"`;
  const lines = ['flowchart LR'];
  for (const sub of graph.subTopologies) {
    lines.push(`  subgraph sub${sub.id}[${q(`${sub.id}: ${sub.name}`)}]`);
    for (const s of sub.stages) lines.push(`    ${id.stage(s.name)}[${q(`${s.name}<br/>${s.type}`)}]`);
    lines.push('  end');
  }
  for (const t of graph.topics) lines.push(`  ${id.topic(t.name)}([${q(t.name)}])`);
  for (const r of graph.resources) lines.push(`  ${id.resource(r.kind, r.name)}{{${q(`${r.kind} ${r.name}`)}}}`);
  for (const s of graph.subTopologies.flatMap((x) => x.stages)) {
    if (s.input) lines.push(`  ${id.topic(s.input.topic)} --> ${id.stage(s.name)}`);
    for (const p of s.ports) lines.push(`  ${id.stage(s.name)} ${FAILURE_PORTS.has(p.name) ? '-.->' : '-->'}|${p.name}| ${id.topic(p.topic)}`);
  }
  for (const e of resourceEdges(graph)) lines.push(`  ${id.resource(e.kind, e.name)} -.- ${id.stage(e.stage)}`);
  return lines.join('\n');
}
