import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { parseTopology, topologyTopics } from '../../../src/topology/load.js';

const good = `
name: demo
kafka:
  brokers: \${BROKERS:-127.0.0.1:9092}
topics:
  prefix: p.
  partitions: 2
stages:
  - name: copy
    type: pass-through
    input: in
    output: out
    batchSize: 10
`;

function errorOf(text: string, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseTopology(text, 'topologies/x.yaml', { env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the topology to be rejected');
}

describe('topology loading', () => {
  it('resolves a valid file: defaults, prefix, env interpolation, group ids', () => {
    const t = parseTopology(good, 'demo.yaml', { env: { BROKERS: 'a:1,b:2' } });
    expect(t.kafka.brokers).toEqual(['a:1', 'b:2']);
    const s = t.stages[0]!;
    expect(s).toMatchObject({ name: 'copy', input: 'p.in', ports: { out: 'p.out' }, rejects: 'p.magpie.rejects', deadLetter: 'p.magpie.dead-letter', groupId: 'p.demo.copy', batchSize: 10, concurrency: 1, exactlyOnce: true, partitions: 2 });
    expect([...topologyTopics(t).keys()].sort()).toEqual(['p.in', 'p.magpie.dead-letter', 'p.magpie.rejects', 'p.out']);
  });

  it('uses the default of an unset variable and overrides from options', () => {
    const t = parseTopology(good, 'demo.yaml', { env: {}, topicPrefix: 'q-', brokers: ['x:9'] });
    expect(t.kafka.brokers).toEqual(['x:9']);
    expect(t.stages[0]!.input).toBe('q-in');
  });

  it.each([
    ['a field of the wrong type', good.replace('batchSize: 10', 'batchSize: lots'), /topologies\/x\.yaml: stages\[0\]\.batchSize: .*number/],
    ['an unknown field', good.replace('batchSize: 10', 'batchsize: 10'), /topologies\/x\.yaml: stages\[0\]: .*batchsize/],
    ['an unknown stage type', good.replace('type: pass-through', 'type: teleport'), /stages\[0\]\.type: unknown stage type 'teleport' \(known: .*pass-through/],
    ['a missing output', good.replace('    output: out\n', ''), /stages\[0\]\.output: /],
    ['a processor without input', good.replace('    input: in\n', ''), /stages\[0\]\.input: stage type 'pass-through' consumes a topic/],
    ['a bad topic name', good.replace('output: out', 'output: "o u t"'), /stages\[0\]\.output: .*topic name/],
    ['a duplicate stage name', good + good.split('stages:\n')[1]!, /stages\[1\]\.name: duplicate stage name 'copy'/],
    ['no stages', good.split('stages:')[0] + 'stages: []\n', /stages: a topology needs at least one stage/],
    ['an unknown top-level key', `${good}\nextra: 1\n`, /topologies\/x\.yaml: \(root\): .*extra/],
    ['an unknown backend reference', good.replace('type: pass-through', 'type: generate-responses').replace('    batchSize: 10', '    backend: nope\n    template: { family: chatml }'), /stages\[0\] \(copy\): uses backend 'nope', which is not declared under backends \(have: none\)/],
  ])('names the file and field path for %s', (_label, text, pattern) => {
    expect(errorOf(text)).toMatch(pattern);
  });

  it('names an unset environment variable without a default', () => {
    expect(errorOf(good.replace('${BROKERS:-127.0.0.1:9092}', '${NOT_SET_ANYWHERE}'))).toMatch(/kafka\.brokers: environment variable NOT_SET_ANYWHERE is not set/);
  });

  it('reports YAML syntax errors with the file name', () => {
    expect(errorOf('name: [unclosed')).toMatch(/topologies\/x\.yaml: not valid YAML/);
  });

  it('reports every problem at once', () => {
    const text = good.replace('batchSize: 10', 'batchSize: -1\n    concurrency: 0');
    const message = errorOf(text);
    expect(message).toMatch(/batchSize/);
    expect(message).toMatch(/concurrency/);
  });
});

describe('environment interpolation', () => {
  it('refuses a near-duplicate stage whose input has more than one partition, or with concurrency > 1, naming what to change', () => {
    const dedupe = (writerPartitions: string, stageFields: string) => `
name: demo
kafka: { brokers: 127.0.0.1:9092 }
topics: { partitions: 3 }
stages:
  - { name: embed, type: pass-through, schema: magpie.Conversation, input: conversations, output: embedded${writerPartitions} }
  - { name: dedupe, type: near-duplicate, input: embedded, output: deduped, ports: { changelog: dedupe-index }${stageFields} }
`;
    expect(() => parseTopology(dedupe(', partitions: 1', ''), 'x.yaml')).not.toThrow();
    expect(errorOf(dedupe('', ''))).toMatch(/stages\[0\]\.partitions: .*set partitions: 1 on stage 'embed'/);
    const message = errorOf(dedupe(', partitions: 1', ', concurrency: 4, exactlyOnce: false'));
    expect(message).toMatch(/stages\[1\]\.concurrency: .*set concurrency: 1/);
    expect(message).toMatch(/stages\[1\]\.exactlyOnce: /);
    const external = `
name: demo
kafka: { brokers: 127.0.0.1:9092 }
stages:
  - { name: dedupe, type: near-duplicate, input: embedded, output: deduped, ports: { changelog: dedupe-index } }
`;
    expect(errorOf(external)).toMatch(/stages\[0\]\.input: .*topics.partitions is 3/);
  });

  it('gives a whole-value placeholder the YAML type of its value', async () => {
    const { interpolateEnv } = await import('../../../src/topology/interpolate.js');
    expect(interpolateEnv({ a: '${X:-0.5}', b: '${Y:-true}', c: 'pre-${X:-1}', d: '${Z:-abc}', e: '${W:-}' }, { X: '2' })).toEqual({ a: 2, b: true, c: 'pre-2', d: 'abc', e: '' });
  });
});

describe('nested defaults', () => {
  it('expands placeholders inside a default', async () => {
    const { interpolateEnv } = await import('../../../src/topology/interpolate.js');
    expect(interpolateEnv('${A:-${B:-${HOME}/x}/y}', { HOME: '/h' })).toBe('/h/x/y');
    expect(interpolateEnv('${A:-${B:-${HOME}/x}/y}', { HOME: '/h', B: '/b' })).toBe('/b/y');
    expect(() => interpolateEnv('${A:-oops', {})).toThrow(/unclosed/);
  });
});
