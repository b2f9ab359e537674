import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { parseTopology } from '../../../src/topology/load.js';
import { topologyChains } from '../../../src/topology/graph.js';
import { defaultReplayId, planReplay } from '../../../src/topology/replay.js';

const topology = parseTopology(
  `
name: pipeline
kafka: { brokers: 127.0.0.1:9092 }
topics: { prefix: p. }
stages:
  - { name: language, type: tag-language, input: responses, output: languaged }
  - { name: quality, type: filter, input: languaged, output: filtered, rules: [{ field: input_quality, in: [good] }] }
  - { name: copy, type: pass-through, schema: magpie.Conversation, input: filtered, output: copied }
`,
  'pipeline.yaml',
  { env: {} },
);

describe('replay plan', () => {
  it('runs the filter stages by default: from --from into --to, under a new group, rejects beside --to', () => {
    const plan = planReplay(topology, { from: 'p.tagged', to: 'p.refiltered', replayId: 'replay-1' });
    expect(plan.topology.stages.map((s) => s.name)).toEqual(['quality']);
    expect(plan.topology.stages[0]).toMatchObject({ input: 'p.tagged', ports: { out: 'p.refiltered' }, groupId: 'replay-1', rejects: 'p.refiltered.rejects', deadLetter: 'p.refiltered.dead-letter' });
    expect(plan.topology.stages[0]!.config).toBe(topology.stages[1]!.config);
  });

  it('chains named stages in topology order through replay topics', () => {
    const plan = planReplay(topology, { from: 'in', to: 'out', stages: ['quality', 'language'], replayId: 'r', groupId: 'g' });
    expect(plan.topology.stages.map((s) => [s.name, s.input, s.ports.out, s.groupId])).toEqual([
      ['language', 'in', 'r.language.out', 'g'],
      ['quality', 'r.language.out', 'out', 'g.quality'],
    ]);
  });

  it('keeps a chain of the topology where both stages are replayed, and reads a topic behind any other stage', () => {
    const chained = parseTopology(
      `
name: chained
kafka: { brokers: 127.0.0.1:9092 }
embedders:
  minilm: { model: sentence-transformers/all-MiniLM-L6-v2 }
stages:
  - { name: embed, type: embed, input: responses, output: embedded, embedder: minilm, partitions: 1 }
  - { name: dedupe, type: near-duplicate, input: embedded, output: deduped, ports: { changelog: dedupe-index } }
  - { name: language, type: tag-language, input: deduped, output: languaged }
  - { name: copy, type: pass-through, schema: magpie.Conversation, input: languaged, output: copied, via: memory }
  - { name: keep, type: filter, input: copied, output: kept, via: memory, rules: [{ field: language, eq: en }] }
`,
      'chained.yaml',
      { env: {} },
    );
    const via = (stages: string[]) => planReplay(chained, { from: 'in', to: 'out', stages, replayId: 'r' }).topology.stages.map((s) => [s.name, s.via]);
    expect(via(['language', 'copy', 'keep'])).toEqual([['language', 'topic'], ['copy', 'memory'], ['keep', 'memory']]);
    // copy's stage before it in the topology is not replayed: behind the stage with state it reads a topic.
    expect(via(['dedupe', 'copy', 'keep'])).toEqual([['dedupe', 'topic'], ['copy', 'topic'], ['keep', 'memory']]);
    expect(via(['language', 'keep'])).toEqual([['language', 'topic'], ['keep', 'topic']]);
    const plan = planReplay(chained, { from: 'in', to: 'out', stages: ['dedupe', 'copy', 'keep'], replayId: 'r' });
    expect(topologyChains(plan.topology).map((c) => c.map((s) => s.name).join(' -> '))).toEqual(['dedupe', 'copy -> keep']);
  });

  it('refuses unknown stages, writing into the source, and a topology without a filter', () => {
    expect(() => planReplay(topology, { from: 'a', to: 'b', stages: ['nope'] })).toThrow(/no stage named nope/);
    expect(() => planReplay(topology, { from: 'a', to: 'a' })).toThrow(ConfigError);
    const noFilter = { ...topology, stages: topology.stages.filter((s) => s.type !== 'filter') };
    expect(() => planReplay(noFilter, { from: 'a', to: 'b' })).toThrow(/no filter stage/);
  });

  it('names a replay by its UTC start time and a random suffix, in topic-name characters', () => {
    expect(defaultReplayId(new Date('2026-03-04T05:06:07.890Z'))).toMatch(/^replay-20260304-050607-[0-9a-f]{4}$/);
  });
});
