/**
 * The recipe stages on the real SmolLM2 model (embedded backend): an exact decoding mixture with a system-prompt
 * mixture, answers, and the Magpie-Air reward difference with SmolLM2 as the base model. The reward model is
 * the in-test OpenAI-compatible server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Conversation, Instruction } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { runTopology } from '../../../src/topology/build.js';
import { waitUntilDrained } from '../../../src/topology/drain.js';
import { loadTopologyFile } from '../../../src/topology/load.js';
import { uniquePrefix } from '../../support/broker.js';
import { FaultyOpenAIServer } from '../../support/faults/openai-server.js';
import { readAll } from '../../support/records.js';
import { topologyTestContext } from '../../support/topology-run.js';

const { logger, bootstrap, track } = topologyTestContext();
const serde = createSerde();

describe('recipe stages on SmolLM2 (real broker, real model)', () => {
  const rewardServer = new FaultyOpenAIServer();
  const scored: string[] = [];
  beforeAll(async () => {
    await rewardServer.listen();
    rewardServer.score = (text) => {
      scored.push(text);
      return text.length / 10;
    };
  });
  afterAll(() => rewardServer.close());

  it('samples the exact mixture, records each setting and system prompt, and scores instruct against base answers', async () => {
    const topology = await loadTopologyFile('topologies/test/recipe-smollm2.yaml', { topicPrefix: uniquePrefix('recipe-smollm2'), brokers: [bootstrap], env: { ...process.env, FAKE_OPENAI_URL: rewardServer.url } });
    const run = track(await runTopology(topology, logger));
    await waitUntilDrained(run);
    const out = (stage: string) => topology.stages.find((s) => s.name === stage)!.ports.out!;

    const instructions = await readAll<Instruction>(run.kafka, serde, out('instructions'), 'magpie.Instruction');
    const keys = instructions.map((i) => i.gen_input_configs.decoding_key).sort();
    expect(keys).toEqual(['t1-p1', 't1-p1', 't1-p1', 't1.2-p0.995', 't1.2-p0.995', 't1.2-p0.995']);
    for (const i of instructions) {
      expect(['none', 'math']).toContain(i.gen_input_configs.system_prompt_key);
      if (i.gen_input_configs.system_prompt_key === 'math') expect(i.gen_input_configs.pre_query_template).toContain('math problems step by step');
      expect(i.gen_input_configs.input_generator).toMatch(/^llamacpp:/);
    }

    const records = await readAll<Conversation>(run.kafka, serde, out('reward-difference'), 'magpie.Conversation');
    const responses = await readAll<Conversation>(run.kafka, serde, out('responses'), 'magpie.Conversation');
    expect(records).toHaveLength(responses.length);
    expect(records.length).toBeGreaterThan(0);
    for (const c of records) {
      expect(c.tag_failures).toEqual([]);
      expect(c.base_output).toBeTypeOf('string');
      expect(c.reward_model).toBe('fake-rm');
      expect(c.reward_difference).toBeCloseTo(c.instruct_reward! - c.base_reward!, 9);
      // Both answers went to the reward model, each with its instruction.
      expect(scored).toContain(`${c.instruction}\n\n${c.response}`);
      expect(scored).toContain(`${c.instruction}\n\n${c.base_output}`);
    }
  }, 600_000);
});
