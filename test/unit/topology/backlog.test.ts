import { describe, expect, it } from 'vitest';
import { backlogBound } from '../../../src/topology/build.js';
import { parseTopology } from '../../../src/topology/load.js';

const topology = (sourceExtra = '', readerExtra = '') =>
  parseTopology(
    `
name: backlog
kafka: { brokers: 127.0.0.1:9092 }
topics: { partitions: 3 }
backends:
  gpu: { type: openai, baseUrl: http://127.0.0.1:1/v1, model: m, server: vllm, serverBatch: 512 }
stages:
  - { name: instructions, type: generate-instructions, backend: gpu, template: chatml, output: instructions${sourceExtra} }
  - { name: responses, type: generate-responses, backend: gpu, template: chatml, input: instructions, output: conversations${readerExtra} }
  - { name: copy, type: pass-through, schema: magpie.Instruction, input: instructions, output: copied }
`,
    'backlog.yaml',
  );

describe('backlogBound', () => {
  it('bounds a source by twice what every reader works on at once, from the readers\' tuning, in their groups', () => {
    const t = topology();
    // responses: 512 requests at once → window 16 × 128 records on each of 3 partitions; pass-through: 8 × 32.
    const bound = backlogBound(t, t.stages[0]!, (s) => (s.name === 'responses' ? 512 : undefined));
    expect(bound).toEqual({ topic: 'instructions', groups: ['backlog.responses', 'backlog.copy'], max: 2 * 3 * 16 * 128 });
  });

  it('takes the topology\'s own maxBacklog and the readers\' own batch and window', () => {
    const t = topology(', maxBacklog: 5000', ', batchSize: 10, window: 2');
    const gpu = (s: { name: string }) => (s.name === 'responses' ? 512 : undefined);
    expect(backlogBound(t, t.stages[0]!, gpu).max).toBe(5000);
    // responses now works on 2 × 10 records a partition; the pass-through's 8 × 32 is the larger.
    const u = topology('', ', batchSize: 10, window: 2');
    expect(backlogBound(u, u.stages[0]!, gpu).max).toBe(2 * 3 * 8 * 32);
  });

  it('refuses maxBacklog on a stage that reads a topic, naming the field', () => {
    expect(() => topology('', ', maxBacklog: 10')).toThrow(/stages\[1\]\.maxBacklog: only a source/);
  });
});
