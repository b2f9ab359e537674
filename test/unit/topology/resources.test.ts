import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError } from '../../../src/core/errors.js';
import type { InferenceBackend } from '../../../src/inference/backend.js';
import type { RewardModel } from '../../../src/inference/reward.js';
import { STAGE_DEFINITIONS } from '../../../src/processors/registry.js';
import { defineProcessor, emitValue, type InputRecord, type StageDeps } from '../../../src/processors/stage.js';
import type { Instruction } from '../../../src/serde/records.generated.js';
import { parseTopology, type Topology } from '../../../src/topology/load.js';
import { Resources } from '../../../src/topology/resources.js';

/** What the test stage got from its deps when it was created. */
const created: { answerer?: InferenceBackend; grader?: RewardModel; deps?: StageDeps }[] = [];

/** A stage type of this test only: its backend field is called `answerer`, its reward field `grader`. */
const answerStage = defineProcessor({
  type: 'test-answer',
  description: 'test only: names its resources in fields no builder knows',
  config: z.object({ answerer: z.string().min(1), grader: z.string().min(1) }),
  uses: (c) => ({ backends: [c.answerer], rewards: [c.grader] }),
  inputSchema: 'magpie.Instruction',
  outputSchema: 'magpie.Instruction',
  create: (c, deps) => {
    created.push({ answerer: deps.backend(c.answerer), grader: deps.reward(c.grader), deps });
    return { process: async (batch: InputRecord<Instruction>[]) => batch.map((r) => emitValue<Instruction>(r.value, r.key)) };
  },
});

const definitions = [...STAGE_DEFINITIONS, answerStage];

const topologyText = (answerer: string, grader = 'rm') => `
name: custom
kafka: { brokers: 127.0.0.1:9092 }
backends:
  llm: { type: openai, baseUrl: http://127.0.0.1:1/v1, model: test-model }
  other: { type: openai, baseUrl: http://127.0.0.1:1/v1, model: other-model }
rewards:
  rm: { url: http://127.0.0.1:1/score, api: score-json, model: test-rm }
stages:
  - { name: answers, type: test-answer, input: instructions, output: answered, answerer: ${answerer}, grader: ${grader} }
  - { name: more-answers, type: test-answer, input: answered, output: sink, answerer: llm, grader: rm }
`;

const logger = pino({ level: 'silent' });
let resources: Resources | undefined;

afterEach(async () => {
  await resources?.close();
  resources = undefined;
  created.length = 0;
});

function load(text: string): Topology {
  return parseTopology(text, 'custom.yaml', { env: {}, definitions });
}

describe('declared stage resources', () => {
  it('fails on load, naming the stage and the resource, when a custom field names a missing backend or reward', () => {
    expect(() => load(topologyText('nope'))).toThrow(ConfigError);
    expect(() => load(topologyText('nope'))).toThrow(/custom\.yaml: stages\[0\] \(answers\): uses backend 'nope', which is not declared under backends \(have: llm, other\)/);
    expect(() => load(topologyText('llm', 'gone'))).toThrow(/stages\[0\] \(answers\): uses reward 'gone', which is not declared under rewards \(have: rm\)/);
  });

  it('loads what the declaration names, once for every stage that shares it, and hands it to create()', async () => {
    const topology = load(topologyText('llm'));
    expect(topology.stages.map((s) => s.uses)).toEqual([
      { backends: ['llm'], embedders: [], rewards: ['rm'] },
      { backends: ['llm'], embedders: [], rewards: ['rm'] },
    ]);
    resources = new Resources(topology, logger);
    await resources.load(topology.stages);
    for (const stage of topology.stages) answerStage.create(stage.config as never, resources.depsFor(stage));
    expect(created).toHaveLength(2);
    expect(created[0]!.answerer!.model).toBe('test-model');
    expect(created[1]!.answerer).toBe(created[0]!.answerer);
    expect(created[0]!.grader!.model).toBe('test-rm');
    expect(created[1]!.grader).toBe(created[0]!.grader);
  });

  it('gives a stage only what it declared: another backend of the topology is refused by name', async () => {
    const topology = load(topologyText('llm'));
    resources = new Resources(topology, logger);
    await resources.load(topology.stages);
    const deps = resources.depsFor(topology.stages[0]!);
    expect(() => deps.backend('other')).toThrow(/stage answers: backend 'other' is not among the backends its type 'test-answer' declares it uses \(llm\)/);
    expect(() => deps.embedder('minilm')).toThrow(/stage answers: embedder 'minilm' is not among the embedders .* \(none\)/);
  });

  it('shares one creation between concurrent loads of the same resource', async () => {
    const topology = load(topologyText('llm'));
    resources = new Resources(topology, logger);
    await Promise.all([resources.load([topology.stages[0]!]), resources.load([topology.stages[1]!])]);
    const [a, b] = topology.stages.map((s) => resources!.depsFor(s).backend('llm'));
    expect(a).toBe(b);
  });

  it('refuses to hand out a declared resource before it is loaded', () => {
    const topology = load(topologyText('llm'));
    resources = new Resources(topology, logger);
    expect(() => resources!.depsFor(topology.stages[0]!).backend('llm')).toThrow(/backend 'llm' is not loaded/);
  });
});
