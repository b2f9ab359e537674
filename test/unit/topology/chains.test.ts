import { describe, expect, it } from 'vitest';
import { renderGraph } from '../../../src/topology/describe.js';
import { buildGraph, topologyChains } from '../../../src/topology/graph.js';
import { parseTopology } from '../../../src/topology/load.js';

const parse = (stages: string) => parseTopology(`name: demo\nkafka:\n  brokers: b:9092\nstages:\n${stages}`, 'demo.yaml');
const copy = (name: string, input: string, output: string, extra = '') => `  - { name: ${name}, type: pass-through, schema: magpie.Instruction, input: ${input}, output: ${output}${extra} }\n`;

describe('chains (via: memory)', () => {
  it('groups a stage with the stages chained after it, and names the sub-topology a -> b -> c', () => {
    const t = parse(copy('a', 'in', 'ab') + copy('b', 'ab', 'bc', ', via: memory') + copy('c', 'bc', 'cd', ', via: memory') + copy('d', 'cd', 'out'));
    expect(topologyChains(t).map((chain) => chain.map((s) => s.name))).toEqual([['a', 'b', 'c'], ['d']]);
    const graph = buildGraph(t);
    expect(graph.subTopologies.map((s) => s.name)).toEqual(['a -> b -> c', 'd']);
    expect(renderGraph(graph, 'text')).toContain('a -> b -> c');
  });

  it('refuses a chain where a topic is needed, naming the field and what to change', () => {
    const cases: [string, RegExp][] = [
      [copy('a', 'in', 'ab', ', via: memory'), /stages\[0\]\.via: the first stage has no stage before it/],
      [copy('a', 'in', 'ab') + copy('b', 'other', 'out', ', via: memory'), /stages\[1\]\.via: b reads other, but a before it writes ab/],
      [copy('a', 'in', 'ab') + copy('b', 'ab', 'out', ', via: memory') + copy('c', 'ab', 'out2'), /stages\[1\]\.via: ab is read by b, c; a chained topic must have one reader/],
      [copy('a', 'in', 'ab') + copy('b', 'ab', 'out', ', via: memory, exactlyOnce: false'), /stages\[1\]\.via: b and a differ in exactlyOnce/],
      [copy('a', 'in', 'ab', ", principal: 'User:a'") + copy('b', 'ab', 'bc', ', via: memory') + copy('c', 'bc', 'out', ", via: memory, principal: 'User:c'"), /stages\[2\]\.principal: c runs in the chain of a, as its principal \(User:a\); remove principal, or give a the same one/],
      [
        `  - { name: a, type: generate-instructions, backend: g, template: chatml, output: ab }\n` + copy('b', 'ab', 'out', ', via: memory'),
        /stages\[1\]\.via: a is a source, which runs on its own/,
      ],
    ];
    for (const [stages, message] of cases) {
      const backends = stages.includes('generate-instructions') ? "backends: { g: { type: openai, baseUrl: 'http://x/v1', model: m } }\n" : '';
      expect(() => parseTopology(`name: demo\nkafka:\n  brokers: b:9092\n${backends}stages:\n${stages}`, 'demo.yaml')).toThrow(message);
    }
  });
});
