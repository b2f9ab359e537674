/**
 * The stream core under production-shaped faults, on the real broker: one record that always fails, a commit
 * that fails after the work is done, outputs larger than the topic takes, two instances of one source, an
 * inference outage, and stages that fail for good. Each ends with every record once and no inference repeated.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MagpieError } from '../../../src/core/errors.js';
import { StageMetrics } from '../../../src/core/metrics.js';
import { ensureTopics } from '../../../src/kafka/admin.js';
import { createKafka } from '../../../src/kafka/client.js';
import { consumerLag } from '../../../src/kafka/consumer-lag.js';
import { TransactionalCommitter, type CommitRequest, type Committer } from '../../../src/kafka/committer.js';
import { StageRunner } from '../../../src/kafka/stage-runner.js';
import type { InputRecord, Processor } from '../../../src/processors/stage.js';
import type { DeadLetter, Instruction } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { createTopologyTopics, routeTarget, runTopology, stageTuning } from '../../../src/topology/build.js';
import { waitUntilDrained } from '../../../src/topology/drain.js';
import { loadTopologyFile } from '../../../src/topology/load.js';
import { uniquePrefix } from '../../support/broker.js';
import { FaultyOpenAIServer } from '../../support/faults/openai-server.js';
import { StageProcess } from '../../support/faults/stage-process.js';
import { eventually, makeInstruction, produceRecords, readAll } from '../../support/records.js';
import { topologyTestContext } from '../../support/topology-run.js';

const { logger, bootstrap, track } = topologyTestContext();
const serde = createSerde();
const servers: FaultyOpenAIServer[] = [];
const processes: StageProcess[] = [];

afterEach(async () => {
  await Promise.allSettled(processes.splice(0).map((p) => p.stop()));
  await Promise.allSettled(servers.splice(0).map((s) => s.close()));
});

async function fakeServer(): Promise<FaultyOpenAIServer> {
  const server = await new FaultyOpenAIServer().listen();
  servers.push(server);
  return server;
}

/** The respond stage of topologies/test/inference-faults.yaml against `server`, under a fresh prefix. */
async function responder(name: string, server: FaultyOpenAIServer) {
  const prefix = uniquePrefix(name);
  const topology = await loadTopologyFile('topologies/test/inference-faults.yaml', { topicPrefix: prefix, brokers: [bootstrap], env: { ...process.env, FAKE_OPENAI_URL: server.url } });
  const kafka = createKafka(topology.kafka, logger);
  const stage = topology.stages.find((s) => s.name === 'respond')!;
  return { topology, kafka, stage, input: stage.input!, output: stage.ports.out!, dlq: stage.deadLetter };
}

/** Requests whose prompt carries this instruction. */
const asked = (server: FaultyOpenAIServer, instruction: string) => server.bodies.filter((b) => b.prompt?.includes(instruction)).length;

const sorted = (values: { uuid: string }[]) => values.map((v) => v.uuid).sort();

describe('stream core under real failures', () => {
  it('dead-letters a record that always fails after its own budget, while its 15 siblings commit, each answered once', async () => {
    const server = await fakeServer();
    const bad = makeInstruction(5, 'ALWAYS-FAILS: summarise this');
    const sent = Array.from({ length: 16 }, (_, i) => (i === 5 ? bad : makeInstruction(i)));
    server.statusFor = (body) => (body.prompt?.includes('ALWAYS-FAILS') ? 500 : undefined);
    const t = await responder('one-bad', server);
    track(await runTopology(t.topology, logger, { stages: ['respond'] }));
    await produceRecords(t.kafka, serde, t.input, 'magpie.Instruction', sent);
    await eventually(async () => (await readAll(t.kafka, serde, t.dlq, 'magpie.DeadLetter')).length === 1, 120_000);
    const out = await readAll<Instruction>(t.kafka, serde, t.output, 'magpie.Conversation');
    expect(sorted(out)).toEqual(sorted(sent.filter((s) => s !== bad)));
    const [dead] = await readAll<DeadLetter>(t.kafka, serde, t.dlq, 'magpie.DeadLetter');
    // The default budget (deadLetterAfterAttempts 5), spent while the server answered the others.
    expect(dead).toMatchObject({ stage: 'respond', code: 'INFERENCE_HTTP', attempts: 5, source_key: expect.anything() });
    expect(dead!.reason).toMatch(/HTTP 500.*after 5 attempts/);
    for (const s of sent) {
      if (s === bad) expect(asked(server, s.instruction)).toBeGreaterThanOrEqual(5);
      else expect(asked(server, s.instruction), s.instruction).toBe(1);
    }
  });

  it('keeps the outputs of a commit that failed: the answer-lost commit is not written again, the failed one is re-sent, no inference repeated', async () => {
    const prefix = uniquePrefix('commit-fault');
    const topology = await loadTopologyFile('topologies/test/pass-through.yaml', { topicPrefix: prefix, brokers: [bootstrap] });
    const kafka = createKafka(topology.kafka, logger);
    await createTopologyTopics(kafka, topology, logger);
    const stage = topology.stages[0]!;
    const processed = new Map<string, number>();
    const processor: Processor<Instruction, Instruction> = {
      process: async (batch: InputRecord<Instruction>[]) =>
        batch.map((r) => {
          processed.set(r.value.uuid, (processed.get(r.value.uuid) ?? 0) + 1);
          return { kind: 'emit', records: [{ value: r.value }] };
        }),
    };
    // The real exactly-once committer, with two faults: the first commit succeeds but its answer is lost; the
    // second fails before anything is written.
    const real = new TransactionalCommitter(kafka, stage.groupId, logger, { limitOf: () => 1_048_588 });
    let calls = 0;
    const faulty: Committer = {
      fence: (writer) => real.fence(writer),
      close: () => real.close(),
      commit: async (req: CommitRequest, commitOffsets) => {
        calls++;
        if (calls === 2) throw new MagpieError('TEST_COMMIT_FAILED', 'injected: broker unreachable before the commit');
        await real.commit(req);
        if (calls === 1) throw new MagpieError('TEST_ANSWER_LOST', 'injected: the commit went through but its answer was lost');
        void commitOffsets;
      },
    };
    const sent = Array.from({ length: 600 }, (_, i) => makeInstruction(i));
    await produceRecords(kafka, serde, stage.input!, 'magpie.Instruction', sent);
    const target = routeTarget(stage);
    const { window } = stageTuning(stage, undefined);
    const runner = new StageRunner(processor as Processor<unknown, unknown>, {
      kafka, serde, logger, metrics: new StageMetrics(), groupId: stage.groupId, input: stage.input!, target, batchSize: 100, window,
      concurrency: 3, exactlyOnce: true, sessionTimeoutMs: 30_000, committer: faulty,
    });
    await runner.start();
    try {
      await eventually(async () => (await readAll(kafka, serde, stage.ports.out!, 'magpie.Instruction')).length >= sent.length, 120_000);
      // Nothing more arrives after the last record: read once more after the runner has settled.
      await new Promise((r) => setTimeout(r, 3_000));
    } finally {
      await runner.stop(5_000);
    }
    const out = await readAll<Instruction>(kafka, serde, stage.ports.out!, 'magpie.Instruction');
    expect(out).toHaveLength(sent.length);
    expect(sorted(out)).toEqual(sorted(sent));
    expect(calls).toBeGreaterThanOrEqual(3);
    expect([...processed.values()].every((n) => n === 1)).toBe(true);
    expect(processed.size).toBe(sent.length);
  });

  it('delivers a chunk whose outputs are five times the output topic\'s max.message.bytes, exactly once', async () => {
    const prefix = uniquePrefix('big-chunk');
    const topology = await loadTopologyFile('topologies/test/pass-through.yaml', { topicPrefix: prefix, brokers: [bootstrap] });
    const kafka = createKafka(topology.kafka, logger);
    const output = topology.stages[0]!.ports.out!;
    // The output topic takes 200 kB per request; 500 records of 2 kB make a 1 MB chunk.
    await ensureTopics(kafka, [{ name: output, partitions: 3, replicationFactor: 1, configs: { 'max.message.bytes': '200000' } }], logger);
    const run = track(await runTopology(topology, logger));
    const sent = Array.from({ length: 1_500 }, (_, i) => makeInstruction(i, `${'long instruction text '.repeat(95)} #${i}`));
    await produceRecords(kafka, serde, topology.stages[0]!.input!, 'magpie.Instruction', sent);
    await waitUntilDrained(run);
    const out = await readAll<Instruction>(kafka, serde, output, 'magpie.Instruction');
    expect(out).toHaveLength(sent.length);
    expect(sorted(out)).toEqual(sorted(sent));
    expect(await readAll(kafka, serde, topology.stages[0]!.deadLetter, 'magpie.DeadLetter')).toHaveLength(0);
  });

  it('counts a stage that starts at the end of its input as caught up, so --exit-when-done ends at once', async () => {
    const prefix = uniquePrefix('caught-up');
    const topology = await loadTopologyFile('topologies/test/pass-through.yaml', { topicPrefix: prefix, brokers: [bootstrap] });
    const kafka = createKafka(topology.kafka, logger);
    const first = await runTopology(topology, logger);
    await produceRecords(kafka, serde, topology.stages[0]!.input!, 'magpie.Instruction', Array.from({ length: 300 }, (_, i) => makeInstruction(i)));
    await waitUntilDrained(first);
    await first.stop();
    // A second run finds nothing to do: it must say so instead of waiting forever.
    const second = track(await runTopology(topology, logger));
    await expect(Promise.race([waitUntilDrained(second).then(() => 'drained'), new Promise((r) => setTimeout(() => r('still waiting'), 60_000))])).resolves.toBe('drained');
    expect(await readAll(kafka, serde, topology.stages[0]!.ports.out!, 'magpie.Instruction')).toHaveLength(300);
  });

  it('waits out a two-minute inference outage with the default budget: nothing dead-lettered, every record once', async () => {
    const server = await fakeServer();
    server.setFault('http-500');
    const t = await responder('outage', server);
    track(await runTopology(t.topology, logger, { stages: ['respond'] }));
    const sent = Array.from({ length: 40 }, (_, i) => makeInstruction(i));
    await produceRecords(t.kafka, serde, t.input, 'magpie.Instruction', sent);
    // Two minutes down for everyone: many times what a record's budget (5 attempts) would last if it were spent,
    // and past the circuit's longest cool-down (60 s), so probes fail at their slowest pace too.
    await new Promise((r) => setTimeout(r, 120_000));
    expect(server.requests['http-500']).toBeGreaterThan(5);
    server.setFault('none');
    await eventually(async () => (await readAll(t.kafka, serde, t.output, 'magpie.Conversation')).length >= sent.length, 120_000);
    const out = await readAll<Instruction>(t.kafka, serde, t.output, 'magpie.Conversation');
    expect(sorted(out)).toEqual(sorted(sent));
    expect(await readAll(t.kafka, serde, t.dlq, 'magpie.DeadLetter')).toHaveLength(0);
  });

  it('runs one unbounded source in two processes side by side: both produce, neither fences the other', async () => {
    const server = await fakeServer();
    let n = 0;
    server.answer = () => `How do I write a unit test for case ${n++}?`;
    const prefix = uniquePrefix('two-sources');
    const env = { FAKE_OPENAI_URL: server.url };
    const topology = await loadTopologyFile('topologies/test/source-fake.yaml', { topicPrefix: prefix, brokers: [bootstrap], env: { ...process.env, ...env } });
    const kafka = createKafka(topology.kafka, logger);
    const output = topology.stages[0]!.ports.out!;
    const spawn = (label: string) => {
      const p = new StageProcess({ topology: 'topologies/test/source-fake.yaml', brokers: bootstrap, prefix, label: `${prefix}-${label}`, env });
      processes.push(p);
      return p;
    };
    const [a, b] = [spawn('a'), spawn('b')];
    await Promise.all([a, b].map((p) => p.waitForLog((l) => l.msg === 'source started')));
    await eventually(async () => (await readAll(kafka, serde, output, 'magpie.Instruction')).length >= 600, 120_000);
    await Promise.all([a.stop(), b.stop()]);
    const out = await readAll<Instruction>(kafka, serde, output, 'magpie.Instruction');
    expect(new Set(out.map((r) => r.uuid)).size).toBe(out.length);
    for (const p of [a, b]) {
      expect(p.lines.filter((l) => l.msg.startsWith('writing a source batch failed'))).toHaveLength(0);
      // Each wrote its share under its own transactional id.
      expect(p.lines.find((l) => l.msg === 'source finished')?.out, p.problems()).toBeGreaterThan(0);
    }
  });

  it('holds a source at its readers\' backlog bound while they are down, read from the broker, and lets it go on when they are back', async () => {
    const server = await fakeServer();
    let n = 0;
    server.answer = () => `Which test covers case ${n++}?`;
    const prefix = uniquePrefix('backlog');
    const topology = await loadTopologyFile('topologies/test/source-backlog.yaml', { topicPrefix: prefix, brokers: [bootstrap], env: { ...process.env, FAKE_OPENAI_URL: server.url, MAX_BACKLOG: '60' } });
    const kafka = createKafka(topology.kafka, logger);
    const [source, reader] = topology.stages;
    const instructionsTopic = source!.ports.out!;
    const answered = async () => (await readAll(kafka, serde, reader!.ports.out!, 'magpie.Conversation')).length;
    // The reader's backlog as the broker sees it: offsets not committed by its group (transaction markers count).
    const admin = kafka.admin();
    await admin.connect();
    const backlog = async () => [...(await consumerLag(admin, reader!.groupId, instructionsTopic)).values()].reduce((a, b) => a + b, 0);
    try {
      // Source and reader in separate runs, as separate processes would be.
      const sourceRun = track(await runTopology(topology, logger, { stages: ['instructions'] }));
      const readerRun = await runTopology(topology, logger, { stages: ['respond'], createTopics: false });
      await eventually(async () => (await answered()) >= 50, 60_000);
      // The reader goes down (a deploy): the source runs on up to the bound, then waits.
      await readerRun.stop();
      let held = -1;
      await eventually(async () => {
        const now = (await readAll(kafka, serde, instructionsTopic, 'magpie.Instruction')).length;
        const steady = now === held;
        held = now;
        return steady;
      }, 60_000, 3_000);
      const atBound = await backlog();
      // Waiting from 60 on, with at most one batch of 10 written past it; transaction markers take an offset on
      // each of the 2 partitions a batch touches, and the source counts one per batch, so a few more may pass.
      expect(atBound).toBeGreaterThanOrEqual(60);
      expect(atBound).toBeLessThanOrEqual(60 + 10 + 2 * 2);
      const requestsWhileHeld = server.bodies.length;
      await new Promise((r) => setTimeout(r, 2_000));
      expect(server.bodies.length).toBe(requestsWhileHeld);
      // The reader is back: the source goes on.
      track(await runTopology(topology, logger, { stages: ['respond'], createTopics: false }));
      await eventually(async () => (await answered()) >= held + 100, 120_000);
      await sourceRun.stop();
      const instructions = await readAll<Instruction>(kafka, serde, instructionsTopic, 'magpie.Instruction');
      expect(instructions.length).toBeGreaterThan(held);
      expect(new Set(instructions.map((r) => r.uuid)).size).toBe(instructions.length);
    } finally {
      await admin.disconnect();
    }
  });

  it('exits non-zero, naming the stage, when a source fails for good, under --exit-when-done', async () => {
    const server = await fakeServer();
    server.statusFor = () => 400;
    const prefix = uniquePrefix('source-fails');
    const p = new StageProcess({ topology: 'topologies/test/source-fake.yaml', brokers: bootstrap, prefix, env: { FAKE_OPENAI_URL: server.url }, args: ['--exit-when-done'] });
    processes.push(p);
    const exit = await p.exited;
    expect(exit.code).toBe(1);
    expect(p.lines.some((l) => l.msg === 'source failed for good' && l.stage === 'instructions' && /HTTP 400/.test(String(l.err)))).toBe(true);
    expect(p.lines.some((l) => l.msg.startsWith('stage cannot continue') && l.stage === 'instructions')).toBe(true);
  });

  it('exits non-zero with the cause when a stage cannot load its model, under --exit-when-done', async () => {
    const prefix = uniquePrefix('model-missing');
    const p = new StageProcess({ topology: 'topologies/local.yaml', brokers: bootstrap, prefix, env: { MAGPIE_LLM_GGUF: '/nonexistent/model.gguf' }, args: ['--exit-when-done'] });
    processes.push(p);
    const exit = await p.exited;
    expect(exit.code).not.toBe(0);
    expect(p.lines.some((l) => l.level >= 60 && /GGUF model not found at \/nonexistent\/model.gguf/.test(String(l.err)))).toBe(true);
  });
});
