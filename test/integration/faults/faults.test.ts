/**
 * Fault injection on real brokers and real `magpie run` processes: for each fault, N instructions go through
 * a stage, the fault strikes mid-batch, the system recovers, and the sink must hold exactly the uuids sent.
 * The stateful near-duplicate stage goes through the same on embedded conversations, and its decisions must
 * also be those of an undisturbed run. A summary table is printed at the end (and written to
 * .magpie/faults/summary.md).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { PROJECT_ROOT, startBroker, type Broker } from '../../support/broker.js';
import { changelogSeqs, decisionOf, DEDUPE_N, DEDUPE_TOPOLOGY, dedupeReference, restoreFailures } from '../../support/dedupe.js';
import { FaultyOpenAIServer, type ServerFault } from '../../support/faults/openai-server.js';
import { Scenario, type ScenarioOptions } from '../../support/faults/scenario.js';
import { countRecords, formatTable, type FaultRow } from '../../support/faults/sink.js';
import type { StageProcess } from '../../support/faults/stage-process.js';
import { readAll } from '../../support/records.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'fatal' });
const bootstrap = inject('kafkaBootstrap');
const serde = createSerde();
const N = 2_000;
const rows: FaultRow[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

/**
 * A pass-through whose batches of 50 take `delayMs`, two per partition at once: a fault always finds batches in
 * flight, and the 2,000 records take seconds (3 partitions × 2 × 50 records per `delayMs`), not a blink.
 */
const slowCopy = (delayMs: number, extra: Record<string, unknown> = {}) => ({ stages: [{ name: 'copy', batchSize: 50, window: 2, delayMs, sessionTimeoutMs: 6_000, ...extra }] });

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch((err: unknown) => console.warn(`cleanup failed: ${String(err)}`));
});

afterAll(() => {
  if (rows.length === 0) return;
  const table = formatTable(rows);
  console.log(`\nFault-injection summary (N = ${N} per fault, ${DEDUPE_N} for the near-duplicate stage)\n${table}\n`);
  writeFileSync(path.join(process.env.MAGPIE_RUN_DIR ?? path.join(PROJECT_ROOT, '.magpie'), 'faults', 'summary.md'), `${table}\n`);
});

/** A scenario, closed after the test; not prepared yet. */
function newScenario(options: Omit<ScenarioOptions, 'stage' | 'topology'> & Partial<Pick<ScenarioOptions, 'stage' | 'topology'>>): Scenario {
  const s = new Scenario({ topology: 'topologies/test/pass-through.yaml', stage: 'copy', ...options }, serde, logger);
  cleanups.push(() => s.close());
  return s;
}

async function scenario(options: Parameters<typeof newScenario>[0], n = N): Promise<Scenario> {
  return newScenario(options).prepare(n);
}

async function ownBroker(name: string, nodes: 1 | 3 = 1): Promise<Broker> {
  const broker = await startBroker({ name, nodes, fresh: true });
  cleanups.push(() => broker.stop());
  return broker;
}

/** Asserts exactly-once and that no process crashed, then records the row. */
async function finish(s: Scenario, fault: string, liftedAt: number, note?: string): Promise<FaultRow> {
  await s.drained();
  const result = await s.check();
  const row = s.row(fault, result, liftedAt, note);
  rows.push(row);
  expect(result.lost, `${fault}: lost records`).toEqual([]);
  expect(result.unexpected).toEqual([]);
  expect(result.duplicates, `${fault}: duplicated records`).toBe(0);
  expect(result.out).toBe(s.sent.length);
  return row;
}

/** Kills a first process (SIGKILL) a quarter of the way through, starts a second, and checks the sink. */
async function killMidBatchAndRestart(s: Scenario, fault: string): Promise<StageProcess> {
  const first = s.spawn();
  await s.tail.waitFor(N / 4);
  await first.kill();
  expect(s.tail.count).toBeLessThan(N);
  const second = s.spawn();
  await finish(s, fault, Date.now());
  return second;
}

function alive(...processes: StageProcess[]): void {
  for (const p of processes) expect(p.running, `pid ${p.pid} exited; log ${p.logFile}\n${p.problems()}`).toBe(true);
}

describe('fault injection (real brokers, real processes)', () => {
  it('(a) kill -9 of a stage process mid-batch, then a restart', async () => {
    const s = await scenario({ name: 'kill9', brokers: bootstrap, patch: slowCopy(400) });
    alive(await killMidBatchAndRestart(s, 'kill -9 mid-batch + restart'));
  });

  it('(b) restart of the broker while a stage runs', async () => {
    const broker = await ownBroker('five-restart');
    const s = await scenario({ name: 'broker-restart', brokers: broker.bootstrap, patch: slowCopy(300) });
    const stage = s.spawn();
    await s.tail.waitFor(N / 4);
    await broker.stop();
    await new Promise((r) => setTimeout(r, 3_000));
    await broker.startNode(1);
    const liftedAt = Date.now();
    await finish(s, 'broker stop 3 s + start', liftedAt);
    alive(stage);
  });

  it('(c) a 3-node cluster (replication 3, min.insync.replicas 2) losing one broker', async () => {
    const cluster = await ownBroker('five-cluster', 3);
    const s = await scenario({
      name: 'lose-broker',
      brokers: cluster.bootstrap,
      patch: { ...slowCopy(300), topics: { replicationFactor: 3, configs: { 'min.insync.replicas': '2' } } },
    });
    const stage = s.spawn();
    await s.tail.waitFor(N / 4);
    const injectedAt = Date.now();
    await cluster.stopNode(1, { kill: true });
    await finish(s, 'kill -9 of 1 of 3 brokers', injectedAt, 'runs on 2 nodes');
    alive(stage);
    await cluster.startNode(1);
  });

  it('(d) inference server returning 500s, 429s, hanging and dropping connections, then recovering', async () => {
    const server = await new FaultyOpenAIServer().listen();
    cleanups.push(() => server.close());
    const s = await scenario({
      name: 'inference',
      brokers: bootstrap,
      topology: 'topologies/test/inference-faults.yaml',
      stage: 'respond',
      outputSchema: 'magpie.Conversation',
      env: { FAKE_OPENAI_URL: server.url, FAKE_OPENAI_KEY: 'sk-fault-test' },
    });
    const stage = s.spawn({ stages: ['respond'] });
    await s.tail.waitFor(N / 5);
    const phases: [ServerFault, number][] = [['http-500', 6_000], ['http-429', 5_000], ['hang', 5_000], ['reset', 5_000]];
    for (const [fault, ms] of phases) {
      server.setFault(fault);
      await new Promise((r) => setTimeout(r, ms));
    }
    const outDuringFaults = s.tail.count;
    server.setFault('none');
    const liftedAt = Date.now();
    const opened = () => stage.lines.filter((l) => l.msg.startsWith('circuit open')).length;
    const note = `requests while failing: ${phases.map(([f]) => `${f} ${server.requests[f]}`).join(', ')}; circuit opened ${opened()}x`;
    await finish(s, 'inference 500/429/hang/reset (21 s)', liftedAt, note);
    expect(opened()).toBeGreaterThan(0);
    expect(outDuringFaults).toBeLessThan(N);
    expect(await countRecords(s.kafka, s.stage.rejects)).toBe(0);
    expect(server.authorizations).toEqual(new Set(['Bearer sk-fault-test']));
    alive(stage);
  });

  it('(e) a rebalance while requests are in flight: a second instance joins mid-batch, then the first leaves', async () => {
    const s = await scenario({ name: 'rebalance', brokers: bootstrap, patch: slowCopy(250) });
    const a = s.spawn();
    await s.tail.waitFor(N / 5);
    const b = s.spawn();
    await b.waitForLog((l) => l.msg === 'joined group');
    const liftedAt = Date.now();
    await s.tail.waitFor(N / 2);
    await a.stop();
    await finish(s, 'second instance joins mid-batch, first leaves', liftedAt);
    alive(b);
  });

  it('(f) kill -9 of a process mid-chain (two stages chained in memory), then a restart', async () => {
    const s = await scenario({ name: 'chain-kill9', brokers: bootstrap, topology: 'topologies/test/chain.yaml', sinkStage: 'copy-again', patch: slowCopy(400) });
    const second = await killMidBatchAndRestart(s, 'kill -9 mid-chain (copy -> copy-again), restart');
    // The topic between the chained stages is never written.
    expect(await countRecords(s.kafka, s.topology.stages[0]!.ports.out!)).toBe(0);
    alive(second);
  });

  it('(e2) a zombie: an instance frozen past its session timeout wakes up mid-batch after another took over', async () => {
    const s = await scenario({ name: 'zombie', brokers: bootstrap, patch: slowCopy(400) });
    const a = s.spawn();
    const b = s.spawn();
    await Promise.all([a.started(), b.started()]);
    await s.tail.waitFor(N / 5);
    a.signal('SIGSTOP');
    const joinedBefore = b.lines.filter((l) => l.msg === 'joined group').length;
    // b owns all three partitions once a's session (6 s) has expired and the group has rebalanced.
    await b.waitForLog((l) => l.msg === 'joined group' && b.lines.filter((x) => x.msg === 'joined group').length > joinedBefore && Object.values(l.assignment as Record<string, number[]>).flat().length === 3, 60_000);
    a.signal('SIGCONT');
    const liftedAt = Date.now();
    await finish(s, 'instance frozen 6 s+ (zombie), resumed', liftedAt);
    const refused = a.lines.filter((l) => l.msg.startsWith('commit failed; outputs kept')).length;
    const abandoned = a.lines.filter((l) => l.msg === 'partition revoked; its work in flight is abandoned').length;
    const reset = a.lines.filter((l) => l.msg.startsWith('another owner moved the partition on')).length;
    rows.at(-1)!.note = `zombie: ${refused} commits refused, ${abandoned} partitions abandoned, ${reset} windows reset to the successor's position`;
    alive(a, b);
  });

  it('(g) kill -9 of a process running the stateful near-duplicate stage mid-batch, then a restart: same decisions as an undisturbed run', async () => {
    const stateDir = mkdtempSync(path.join(tmpdir(), 'magpie-faults-dedupe-'));
    cleanups.push(async () => rmSync(stateDir, { recursive: true, force: true }));
    const s = newScenario({
      name: 'dedupe-kill9',
      brokers: bootstrap,
      topology: DEDUPE_TOPOLOGY,
      stage: 'dedupe',
      inputSchema: 'magpie.Conversation',
      outputSchema: 'magpie.Conversation',
      env: { DEDUPE_STATE_DIR: stateDir },
    });
    await s.open();
    // The stage starts on its empty input while this process computes real MiniLM embeddings once and the
    // decisions of an undisturbed stage on them.
    const first = s.spawn({ stages: ['dedupe'] });
    const reference = await dedupeReference(s.topology, s.kafka, serde, logger);
    // The stage is faster than a kill: half the input first, the rest once it has saved a snapshot, then the kill.
    await s.prepare(0, reference.values.slice(0, DEDUPE_N / 2));
    await first.waitForLog((l) => l.msg === 'index snapshot saved', 180_000);
    await s.send(reference.values.slice(DEDUPE_N / 2));
    await first.kill();
    const atKill = s.tail.count;
    expect(atKill).toBeLessThan(DEDUPE_N);
    const second = s.spawn({ stages: ['dedupe'] });
    const liftedAt = Date.now();
    const restored = await second.waitForLog((l) => l.msg.startsWith('near-duplicate index restored from a snapshot'), 120_000);
    await s.drained();
    const decisions = (await readAll<Conversation>(s.kafka, serde, s.output, 'magpie.Conversation')).map(decisionOf);
    const expected = new Map(reference.expected.map((d) => [d.uuid, JSON.stringify(d)]));
    const equal = decisions.filter((d) => expected.get(d.uuid) === JSON.stringify(d)).length;
    const duplicates = reference.expected.filter((d) => d.is_duplicate).length;
    const note = `decisions equal to an undisturbed run's: ${equal}/${DEDUPE_N} (${duplicates} duplicates); ${atKill} of ${DEDUPE_N} out at the kill; the restart loaded ${Number(restored.fromSnapshot)} entries from a snapshot + ${Number(restored.fromChangelog)} from the changelog`;
    await finish(s, 'kill -9 of the near-duplicate stage + restart', liftedAt, note);
    // Same decisions, record for record and in order (one partition): distances, nearest uuid, repeat count, verdict.
    expect(decisions).toEqual(reference.expected);
    // The changelog restores: one entry per record, seqs 0..N-1 in offset order, no gap and no repeat.
    expect(await changelogSeqs(s.kafka, serde, s.topology.stages.find((x) => x.name === 'dedupe')!.ports.changelog!)).toEqual(Array.from({ length: DEDUPE_N }, (_, i) => i));
    expect(restoreFailures([first, second])).toEqual([]);
    alive(second);
  });
});
