import { pino } from 'pino';
import { describe, expect, inject, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { firstFailedRule } from '../../../src/processors/filter-rules.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { createKafka } from '../../../src/kafka/client.js';
import { ensureTopics } from '../../../src/kafka/admin.js';
import { loadTopologyFile, parseTopology, type Topology } from '../../../src/topology/load.js';
import { runReplay } from '../../../src/topology/replay.js';
import { uniquePrefix } from '../../support/broker.js';
import { makeConversation, produceRecords, readAll } from '../../support/records.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const bootstrap = inject('kafkaBootstrap');
const serde = createSerde();
const QUALITY = ['poor', 'average', 'good', 'excellent'];

/** Tagged records as the tag stages would leave them: rewards from -1.0 to 0.9, qualities in turn. */
function tagged(i: number): Conversation {
  return {
    ...makeConversation(i, `Explain step ${i} of the algorithm in plain words.`),
    task_category: 'Reasoning',
    input_quality: QUALITY[i % 4]!,
    quality_explanation: 'ok',
    language: 'en',
    instruct_reward: ((i * 7) % 20) / 10 - 1,
    reward_model: 'test-rm',
    is_duplicate: false,
  };
}

async function sourceTopic(name: string, count: number) {
  const prefix = uniquePrefix(name);
  const from = `${prefix}.tagged`;
  const kafka = createKafka({ brokers: [bootstrap], clientId: 'test', ssl: false, connectionTimeoutMs: 10_000, requestTimeoutMs: 30_000 }, logger);
  await ensureTopics(kafka, [{ name: from, partitions: 3, replicationFactor: 1 }]);
  const sent = Array.from({ length: count }, (_, i) => tagged(i));
  await produceRecords(kafka, serde, from, 'magpie.Conversation', sent);
  return { prefix, from, kafka, sent };
}

const uuids = (records: { uuid: string }[]) => records.map((r) => r.uuid).sort();

describe('magpie replay', () => {
  it('a stricter threshold yields a subset of the earlier sink; the same config the same set', async () => {
    const { prefix, from, kafka, sent } = await sourceTopic('replay-threshold', 300);
    const filtered = async (minReward: string, to: string) => {
      const topology = await loadTopologyFile('topologies/magpie-pro-filtered.yaml', { brokers: [bootstrap], env: { MIN_REWARD: minReward } });
      const summary = await runReplay(topology, { from, to }, logger);
      return { summary, topology, kept: await readAll<Conversation>(kafka, serde, to, 'magpie.Conversation') };
    };

    const loose = await filtered('0', `${prefix}.filtered-r0`);
    const rules = loose.topology.stages[0]!.config.rules as Parameters<typeof firstFailedRule>[0];
    const expected = sent.filter((c) => firstFailedRule(rules, c) === undefined);
    expect(expected.length).toBeGreaterThan(20);
    expect(uuids(loose.kept)).toEqual(uuids(expected));
    expect(loose.summary).toMatchObject({ in: 300, kept: expected.length, deadLettered: 0 });
    expect(loose.summary.rejected.reduce((n, r) => n + r.count, 0)).toBe(300 - expected.length);
    expect(loose.summary.rejected.find((r) => r.rule === 'input_quality_in')).toMatchObject({ stage: 'filter', count: 150 });

    const strict = await filtered('0.5', `${prefix}.filtered-r05`);
    expect(strict.kept.length).toBeGreaterThan(0);
    expect(strict.kept.length).toBeLessThan(loose.kept.length);
    const looseSet = new Set(uuids(loose.kept));
    expect(strict.kept.every((c) => looseSet.has(c.uuid) && c.instruct_reward! > 0.5)).toBe(true);

    const again = await filtered('0', `${prefix}.filtered-r0-again`);
    expect(uuids(again.kept)).toEqual(uuids(loose.kept));
    expect(again.summary.groupId).not.toBe(loose.summary.groupId);

    await expect(runReplay(loose.topology, { from, to: `${prefix}.filtered-r0` }, logger)).rejects.toThrow(ConfigError);
  });

  it('tag stages pass already-tagged records through without loading or calling their model', async () => {
    const { prefix, from, kafka } = await sourceTopic('replay-tags', 60);
    // The judge's model file does not exist, and nothing listens on port 9: loading the one or asking the other
    // would fail or retry forever, and the replay never finish.
    const topology: Topology = parseTopology(
      `
name: replay-tags
kafka: { brokers: ${bootstrap} }
backends:
  judge: { type: llamacpp, modelPath: /nonexistent/judge.gguf }
rewards:
  rm: { url: 'http://127.0.0.1:9/score', api: score-json, model: test-rm }
stages:
  - { name: category, type: tag-llm-judge, backend: judge, task: task_category, input: conversations, output: categorized }
  - { name: reward, type: tag-reward, input: categorized, output: rewarded, reward: rm }
  - { name: keep-good, type: filter, input: rewarded, output: filtered, rules: [{ field: input_quality, in: [good, excellent] }] }
`,
      'replay-tags.yaml',
      { env: {} },
    );
    const to = `${prefix}.refiltered`;
    const summary = await runReplay(topology, { from, to, stages: ['category', 'reward', 'keep-good'] }, logger);
    expect(summary).toMatchObject({ in: 60, kept: 30, deadLettered: 0, alreadyTagged: 120, rejected: [{ stage: 'keep-good', rule: 'input_quality_in', count: 30 }] });
    const kept = await readAll<Conversation>(kafka, serde, to, 'magpie.Conversation');
    expect(kept).toHaveLength(30);
    expect(kept.every((c) => c.reward_model === 'test-rm' && ['good', 'excellent'].includes(c.input_quality!))).toBe(true);
  });
});
