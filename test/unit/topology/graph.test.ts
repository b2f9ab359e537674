import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { describeDot, describeMermaid, describeText, renderGraph } from '../../../src/topology/describe.js';
import { buildGraph, checkGraph, graphStages, subTopology, type TopologyGraph } from '../../../src/topology/graph.js';
import { parseTopology } from '../../../src/topology/load.js';

/** Generation, embedding with a stateful dedupe, a reward tag: every kind of port, store and resource. */
const pipeline = `
name: demo
kafka: { brokers: 127.0.0.1:9092 }
topics: { partitions: 2 }
backends:
  llm: { type: openai, baseUrl: http://127.0.0.1:1/v1, model: test-model }
embedders:
  minilm: { model: sentence-transformers/all-MiniLM-L6-v2 }
rewards:
  rm: { url: http://127.0.0.1:1/score, api: score-json, model: test-rm }
stages:
  - { name: instructions, type: generate-instructions, output: instructions, backend: llm, template: chatml }
  - { name: responses, type: generate-responses, input: instructions, output: responses, backend: llm, template: chatml }
  - { name: embed, type: embed, input: responses, output: embedded, embedder: minilm, partitions: 1 }
  - { name: dedupe, type: near-duplicate, input: embedded, output: deduped, ports: { changelog: dedupe-index } }
  - { name: reward, type: tag-reward, input: deduped, output: sink, reward: rm }
`;

function load(text: string) {
  return parseTopology(text, 'demo.yaml', { env: {} });
}

function errorOf(text: string): string {
  try {
    load(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the topology to be rejected');
}

describe('topology graph', () => {
  it('has one sub-topology per stage, with every output as a declared port, stores and resources', () => {
    const graph = buildGraph(load(pipeline));
    expect(graph.subTopologies.map((s) => s.name)).toEqual(['instructions', 'responses', 'embed', 'dedupe', 'reward']);
    const dedupe = graphStages(graph).find((s) => s.name === 'dedupe')!;
    expect(dedupe.input).toEqual({ topic: 'embedded', schema: 'magpie.Conversation' });
    expect(dedupe.ports).toEqual([
      { name: 'out', kind: 'out', topic: 'deduped', schema: 'magpie.Conversation' },
      { name: 'changelog', kind: 'extra', topic: 'dedupe-index', schema: 'magpie.IndexEntry' },
      { name: 'rejects', kind: 'rejects', topic: 'magpie.rejects', schema: 'magpie.Rejected' },
      { name: 'dead-letter', kind: 'dead-letter', topic: 'magpie.dead-letter', schema: 'magpie.DeadLetter' },
    ]);
    expect(dedupe.stores).toEqual([{ name: 'dedupe.changelog', changelog: 'dedupe-index' }]);
    expect(graph.resources).toEqual([
      { kind: 'backend', name: 'llm', summary: 'openai test-model', usedBy: ['instructions', 'responses'] },
      { kind: 'embedder', name: 'minilm', summary: 'sentence-transformers/all-MiniLM-L6-v2', usedBy: ['embed'] },
      { kind: 'reward', name: 'rm', summary: 'score-json test-rm', usedBy: ['reward'] },
    ]);
    const responses = graph.topics.find((t) => t.name === 'responses')!;
    expect(responses).toMatchObject({ partitions: 2, compacted: false, writers: [{ stage: 'responses', port: 'out' }], readers: [{ stage: 'embed' }] });
    expect(graph.topics.find((t) => t.name === 'dedupe-index')).toMatchObject({ partitions: 1, compacted: true });
    expect(graph.topics.find((t) => t.name === 'magpie.rejects')!.writers.map((w) => w.stage)).toEqual(['instructions', 'responses', 'embed', 'dedupe', 'reward']);
  });

  it('prints in the Kafka Streams style: sources, processors and sinks linked by --> and <--', () => {
    const text = describeText(buildGraph(load(pipeline)));
    expect(text).toContain(
      [
        '  Sub-topology: 3 [dedupe]',
        '    Source: dedupe.source (topic: embedded <magpie.Conversation>)',
        '      --> dedupe',
        '    Processor: dedupe (type: near-duplicate; batch auto, window 1, concurrency 1, exactly-once; stores: [dedupe.changelog])',
        '      --> dedupe.out, dedupe.changelog, dedupe.rejects, dedupe.dead-letter',
        '      <-- dedupe.source',
        '    Sink: dedupe.out (topic: deduped <magpie.Conversation>)',
        '      <-- dedupe',
        '    Sink: dedupe.changelog (topic: dedupe-index <magpie.IndexEntry>)',
        '      <-- dedupe',
      ].join('\n'),
    );
    expect(text).toContain('    Generator: instructions (type: generate-instructions; batch auto, concurrency 1, exactly-once; backends: [llm]; stores: [instructions.progress])');
    expect(text).toContain('  dedupe-index (1 partition, compacted; written by dedupe.changelog; read by outside the topology)');
    expect(text).toContain('  rewards.rm: score-json test-rm (used by: reward)');
  });

  it('prints Graphviz dot with a cluster per sub-topology, dashed failure outputs and dotted resource links', () => {
    const graph = buildGraph(load(pipeline));
    const dot = describeDot(graph);
    const id = (topic: string) => `t${graph.topics.findIndex((t) => t.name === topic)}`;
    expect(dot.startsWith('digraph "demo" {')).toBe(true);
    expect(dot.trimEnd().endsWith('}')).toBe(true);
    expect(dot).toContain('subgraph cluster_3 {');
    expect(dot).toContain(`${id('dedupe-index')} [shape=ellipse, label="dedupe-index", peripheries=2];`);
    expect(dot).toContain(`${id('embedded')} -> s3 [label="magpie.Conversation"];`);
    expect(dot).toContain(`s3 -> ${id('magpie.rejects')} [label="rejects", style=dashed];`);
    expect(dot).toContain('r2 -> s4 [style=dotted, arrowhead=none];');
    // Balanced braces: the output is one well-formed graph.
    expect(dot.split('{').length).toBe(dot.split('}').length);
  });

  it('prints a Mermaid flowchart of the same graph', () => {
    const graph = buildGraph(load(pipeline));
    const mermaid = describeMermaid(graph);
    const id = (topic: string) => `t${graph.topics.findIndex((t) => t.name === topic)}`;
    expect(mermaid.split('\n')[0]).toBe('flowchart LR');
    expect(mermaid).toContain('  subgraph sub1["1: responses"]');
    expect(mermaid).toContain(`  ${id('instructions')} --> s1`);
    expect(mermaid).toContain(`  s1 -->|out| ${id('responses')}`);
    expect(mermaid).toContain(`  s1 -.->|dead-letter| ${id('magpie.dead-letter')}`);
    expect(mermaid).toContain('  r0 -.- s0');
    expect(mermaid.match(/^ {2}subgraph /gm)).toHaveLength(5);
    expect(mermaid.match(/^ {2}end$/gm)).toHaveLength(5);
  });

  it('names a sub-topology of several stages as a chain and links its stages in memory, not through topics', () => {
    const graph = buildGraph(load(pipeline));
    const [, , embed, dedupe] = graphStages(graph);
    const chained: TopologyGraph = { ...graph, subTopologies: [subTopology(0, [embed!, dedupe!])] };
    const text = describeText(chained);
    expect(text).toContain('  Sub-topology: 0 [embed -> dedupe]');
    expect(text).toContain('      --> dedupe, embed.rejects, embed.dead-letter');
    expect(text).toContain('      <-- embed\n    Sink: dedupe.out');
    expect(text).not.toContain('Sink: embed.out');
    expect(text).not.toContain('Source: dedupe.source');
  });

  it('prints json that is the graph itself', () => {
    const graph = buildGraph(load(pipeline));
    expect(JSON.parse(renderGraph(graph, 'json'))).toEqual(JSON.parse(JSON.stringify(graph)));
  });
});

describe('edge checks on load', () => {
  it('rejects an edge whose reader cannot read what the writer writes, naming both stages and the topic', () => {
    const text = `
name: mismatch
kafka: { brokers: 127.0.0.1:9092 }
stages:
  - { name: copy, type: pass-through, schema: magpie.Instruction, input: in, output: instructions }
  - { name: keep, type: filter, input: instructions, output: kept, rules: [{ field: language, eq: en }] }
`;
    expect(errorOf(text)).toMatch(
      /^demo\.yaml: stage keep reads magpie\.Conversation from topic instructions, but stage copy writes magpie\.Instruction there \(port out\), which magpie\.Conversation cannot read \(.+\): give keep an input of magpie\.Conversation records$/,
    );
  });

  it('accepts a reader of the same record type, and a topic written from outside the topology', () => {
    const t = load(`
name: fine
kafka: { brokers: 127.0.0.1:9092 }
stages:
  - { name: a, type: pass-through, schema: magpie.Conversation, input: external, output: middle }
  - { name: b, type: filter, input: middle, output: kept, rules: [{ field: language, eq: en }] }
`);
    expect(t.warnings).toEqual([]);
    expect(checkGraph(buildGraph(t)).problems).toEqual([]);
  });

  it('warns about an output nothing reads, but not about the sink, rejects, dead letters or a changelog', () => {
    const t = load(`
name: branch
kafka: { brokers: 127.0.0.1:9092 }
embedders:
  minilm: { model: sentence-transformers/all-MiniLM-L6-v2 }
stages:
  - { name: side, type: pass-through, schema: magpie.Conversation, input: conversations, output: forgotten }
  - { name: embed, type: embed, input: conversations, output: embedded, embedder: minilm, partitions: 1 }
  - { name: dedupe, type: near-duplicate, input: embedded, output: deduped, ports: { changelog: dedupe-index } }
`);
    expect(t.warnings).toEqual(['demo.yaml: stage side writes topic forgotten (port out) and no stage of the topology reads it: read it, or mark the stage `sink: true` if consumers outside the topology do']);
  });

  it('does not warn about the output of a stage marked sink: true, a second sink read outside the topology', () => {
    const t = load(`
name: branch
kafka: { brokers: 127.0.0.1:9092 }
stages:
  - { name: side, type: pass-through, schema: magpie.Conversation, input: conversations, output: side-sink, sink: true }
  - { name: main, type: pass-through, schema: magpie.Conversation, input: conversations, output: main-sink }
`);
    expect(t.warnings).toEqual([]);
    expect(buildGraph(t).subTopologies.flatMap((s) => s.stages).map((s) => [s.name, s.sink])).toEqual([['side', true], ['main', true]]);
  });

  it('reserves the ports every stage has, and refuses a port the stage type does not declare', () => {
    const base = `
name: ports
kafka: { brokers: 127.0.0.1:9092 }
stages:
  - { name: copy, type: pass-through, input: in, output: out, ports: PORTS }
`;
    expect(errorOf(base.replace('PORTS', '{ rejects: elsewhere }'))).toMatch(/stages\[0\]\.ports\.rejects: 'rejects' is a port of every stage; set its topic with rejects/);
    expect(errorOf(base.replace('PORTS', '{ dead-letter: elsewhere }'))).toMatch(/stages\[0\]\.ports\.dead-letter: .* set its topic with deadLetter/);
    expect(errorOf(base.replace('PORTS', '{ changelog: index }'))).toMatch(/stages\[0\]\.ports\.changelog: stage type 'pass-through' has no port 'changelog' \(it has no extra ports\)/);
  });
});
