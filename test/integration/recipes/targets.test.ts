/**
 * `count` is a target for the output topic, not for one run: a `magpie run` process killed with SIGKILL
 * mid-run and started again ends with exactly the requested instructions, the requested mixture, each once;
 * a finished source started again produces nothing.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createKafka } from '../../../src/kafka/client.js';
import type { Instruction, SourceProgress } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { createTopologyTopics } from '../../../src/topology/build.js';
import { loadTopologyFile, type Topology } from '../../../src/topology/load.js';
import { uniquePrefix } from '../../support/broker.js';
import { FaultyOpenAIServer } from '../../support/faults/openai-server.js';
import { countRecords, SinkTail } from '../../support/faults/sink.js';
import { StageProcess } from '../../support/faults/stage-process.js';
import { readAll } from '../../support/records.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'fatal' });
const bootstrap = inject('kafkaBootstrap');
const serde = createSerde();
const FILE = 'topologies/test/instructions-target.yaml';

describe('instruction targets across kill -9 (real broker, real process)', () => {
  let sample = 0;
  // Every fifth sample is empty: rejected, and asked for again.
  const server = new FaultyOpenAIServer(() => (++sample % 5 === 0 ? '   ' : `Question number ${sample}: how does item ${sample} work?`));
  const prefix = uniquePrefix('targets');
  let topology: Topology;
  let kafka: ReturnType<typeof createKafka>;
  let tail: SinkTail;
  const processes: StageProcess[] = [];
  const spawn = () => {
    const p = new StageProcess({ topology: FILE, brokers: bootstrap, prefix, env: { FAKE_OPENAI_URL: server.url }, args: ['--exit-when-done'], label: `${prefix}-${processes.length + 1}` });
    processes.push(p);
    return p;
  };

  beforeAll(async () => {
    await server.listen();
    topology = await loadTopologyFile(FILE, { topicPrefix: prefix, brokers: [bootstrap], env: { ...process.env, FAKE_OPENAI_URL: server.url } });
    kafka = createKafka(topology.kafka, logger);
    await createTopologyTopics(kafka, topology, logger);
    tail = await new SinkTail(kafka, topology.stages[0]!.ports.out!).start();
  });

  afterAll(async () => {
    await Promise.allSettled(processes.map((p) => p.stop()));
    await tail?.stop();
    await server.close();
  });

  it('ends with exactly the requested counts per setting after a SIGKILL, and a restart of a finished source adds nothing', async () => {
    const output = topology.stages[0]!.ports.out!;
    const first = spawn();
    await tail.waitFor(40, 120_000);
    await first.kill();
    const afterKill = await countRecords(kafka, output);
    expect(afterKill, 'the kill landed mid-run').toBeLessThan(200);
    expect(afterKill).toBeGreaterThanOrEqual(40);

    const second = spawn();
    expect((await second.exited).code, second.problems()).toBe(0);
    expect(second.lines.some((l) => l.msg === 'continuing from committed progress')).toBe(true);
    const instructions = await readAll<Instruction>(kafka, serde, output, 'magpie.Instruction');
    expect(instructions).toHaveLength(200);
    expect(new Set(instructions.map((i) => i.uuid)).size).toBe(200);
    expect(new Set(instructions.map((i) => i.instruction)).size).toBe(200);
    const byKey: Record<string, number> = {};
    for (const i of instructions) byKey[i.gen_input_configs.decoding_key!] = (byKey[i.gen_input_configs.decoding_key!] ?? 0) + 1;
    expect(byKey).toEqual({ cool: 120, hot: 80 });
    for (const i of instructions) expect(i.gen_input_configs.temperature).toBe(i.gen_input_configs.decoding_key === 'cool' ? 1.0 : 1.2);
    const progress = await readAll<SourceProgress>(kafka, serde, topology.stages[0]!.ports.progress!, 'magpie.SourceProgress');
    expect(progress.at(-1)).toMatchObject({ stage: 'instructions', produced: 200, produced_by_key: { cool: 120, hot: 80 } });

    const requests = server.total;
    const third = spawn();
    expect((await third.exited).code, third.problems()).toBe(0);
    expect(server.total, 'a finished source asks for nothing').toBe(requests);
    expect(await countRecords(kafka, output)).toBe(200);
  }, 300_000);
});
