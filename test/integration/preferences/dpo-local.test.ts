/**
 * Magpie DPO on the embedded model: topologies/dpo-local.yaml with SmolLM2-135M-Instruct sampling the
 * candidates and a reward server in the test that scores by a deterministic rule (longer answer, higher score).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { magpieCacheDir } from '../../../src/embedding/transformers.js';
import { createKafka } from '../../../src/kafka/client.js';
import type { PreferencePair, Rejected } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { runTopology } from '../../../src/topology/build.js';
import { waitUntilDrained } from '../../../src/topology/drain.js';
import { loadTopologyFile } from '../../../src/topology/load.js';
import { uniquePrefix } from '../../support/broker.js';
import { makeInstruction, produceRecords, readAll } from '../../support/records.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const bootstrap = inject('kafkaBootstrap');
const GGUF = process.env.MAGPIE_LLM_GGUF ?? join(magpieCacheDir(), 'models', 'smollm2-135m-instruct', 'SmolLM2-135M-Instruct.Q4_1.gguf');
const CANDIDATES = 3;

/** The reward rule: the score of an answer is its length in characters. */
const rewardOf = (response: string) => response.length;

let server: Server;
let rewardUrl: string;
const scored: { model: string; instruction: string; response: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as { model: string; instruction: string; response: string };
      scored.push(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ score: rewardOf(body.response) }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  rewardUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/score`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

describe('generate-preferences on the embedded model', () => {
  it('pairs the highest- and lowest-scored of K sampled answers per instruction', async () => {
    const prefix = uniquePrefix('dpo-local');
    const topology = await loadTopologyFile('topologies/dpo-local.yaml', {
      topicPrefix: prefix,
      brokers: [bootstrap],
      env: { ...process.env, MAGPIE_LLM_GGUF: GGUF, MAGPIE_REWARD_URL: rewardUrl, MAGPIE_REWARD_MODEL: 'length-rule', DPO_CANDIDATES: String(CANDIDATES), DPO_MAX_TOKENS: '40', DPO_KEEP_TRUNCATED: 'true' },
    });
    const kafka = createKafka(topology.kafka, logger);
    const serde = createSerde();
    const run = await runTopology(topology, logger);
    try {
      const sent = ['What is the capital of France?', 'Give me three tips for better sleep.', 'Write a haiku about the sea.'].map((text, i) => makeInstruction(i, text));
      await produceRecords(kafka, serde, `${prefix}magpie.instructions`, 'magpie.Instruction', sent);
      await waitUntilDrained(run);
      const pairs = await readAll<PreferencePair>(kafka, serde, `${prefix}magpie.preferences`, 'magpie.PreferencePair');
      const rejects = await readAll<Rejected>(kafka, serde, `${prefix}magpie.rejects`, 'magpie.Rejected');

      // Every instruction ends up paired or, when its samples all scored the same, rejected as no_preference.
      expect([...pairs.map((p) => p.uuid), ...rejects.map((r) => r.uuid)].sort()).toEqual(sent.map((s) => s.uuid).sort());
      for (const r of rejects) expect(r).toMatchObject({ stage: 'preferences', rule: 'no_preference' });
      expect(pairs.length).toBeGreaterThanOrEqual(2);
      for (const pair of pairs) {
        const instruction = sent.find((s) => s.uuid === pair.uuid)!;
        expect(pair).toMatchObject({ instruction: instruction.instruction, reward_model: 'length-rule', model: 'HuggingFaceTB/SmolLM2-135M-Instruct', gen_input_configs: instruction.gen_input_configs });
        expect(pair.gen_response_configs).toMatchObject({ temperature: 0.8, max_tokens: 40 });
        expect(pair.candidates).toHaveLength(CANDIDATES);
        for (const c of pair.candidates) {
          expect(c.response.length).toBeGreaterThan(0);
          expect(c.reward).toBe(rewardOf(c.response));
          expect(scored).toContainEqual({ model: 'length-rule', instruction: instruction.instruction, response: c.response });
        }
        const rewards = pair.candidates.map((c) => c.reward);
        expect(pair.chosen_reward).toBeGreaterThan(pair.rejected_reward);
        expect(pair.chosen_reward).toBe(Math.max(...rewards));
        expect(pair.rejected_reward).toBe(Math.min(...rewards));
        // The rule: chosen is a longest answer, rejected a shortest.
        expect(pair.chosen_reward).toBe(rewardOf(pair.chosen));
        expect(pair.rejected_reward).toBe(rewardOf(pair.rejected));
        expect(pair.chosen.length).toBeGreaterThan(pair.rejected.length);
      }
    } finally {
      await run.stop(0);
    }
  });
});
