/**
 * One fault-injection run: a derived topology under a fresh prefix, its topics, N instructions (or other
 * records) in the input, a tail on the sink, `magpie run` child processes, and the final exact check turned
 * into a summary row.
 */
import type { Kafka } from 'kafkajs';
import type { Logger } from '../../../src/core/logger.js';
import { createKafka } from '../../../src/kafka/client.js';
import { topicEndOffsets } from '../../../src/kafka/admin.js';
import type { RecordSerde } from '../../../src/serde/serde.js';
import type { SchemaName } from '../../../src/serde/schemas.js';
import { createTopologyTopics } from '../../../src/topology/build.js';
import { loadTopologyFile, type Topology } from '../../../src/topology/load.js';
import { uniquePrefix } from '../broker.js';
import { makeInstruction, produceRecords } from '../records.js';
import { checkSink, countRecords, deriveTopology, SinkTail, type FaultRow, type SinkCheck } from './sink.js';
import { StageProcess, type StageProcessOptions } from './stage-process.js';

export interface ScenarioOptions {
  name: string;
  brokers: string;
  /** Topology file the run derives from. */
  topology: string;
  patch?: Record<string, unknown>;
  /** Stage whose consumer group must reach the end of its input before the check. */
  stage: string;
  /** Stage whose output is the sink that is checked (default: `stage`; the last stage of a chain). */
  sinkStage?: string;
  /** Schema of the records sent to the input (default magpie.Instruction). */
  inputSchema?: SchemaName;
  outputSchema?: SchemaName;
  env?: Record<string, string>;
}

export class Scenario {
  readonly prefix: string;
  readonly file: string;
  readonly processes: StageProcess[] = [];
  /** Everything written to the input so far: the sink must hold each of these exactly once. */
  readonly sent: { uuid: string }[] = [];
  kafka!: Kafka;
  topology!: Topology;
  tail!: SinkTail;

  constructor(
    readonly options: ScenarioOptions,
    private readonly serde: RecordSerde,
    private readonly logger: Logger,
  ) {
    this.prefix = uniquePrefix(options.name);
    this.file = options.patch ? deriveTopology(options.topology, options.patch, this.prefix) : options.topology;
  }

  get stage() {
    return this.topology.stages.find((s) => s.name === this.options.stage)!;
  }

  get input(): string {
    return this.stage.input!;
  }

  get output(): string {
    const sink = this.options.sinkStage ? this.topology.stages.find((s) => s.name === this.options.sinkStage)! : this.stage;
    return sink.ports.out!;
  }

  get deadLetter(): string {
    return this.stage.deadLetter;
  }

  /** Loads the topology and creates its topics, unless done already: the first step of `prepare`. */
  async open(): Promise<this> {
    if (this.kafka !== undefined) return this;
    this.topology = await loadTopologyFile(this.file, { topicPrefix: this.prefix, brokers: this.options.brokers.split(','), env: { ...process.env, ...this.options.env } });
    this.kafka = createKafka(this.topology.kafka, this.logger);
    await createTopologyTopics(this.kafka, this.topology, this.logger);
    return this;
  }

  /** Opens the run, sends `n` instructions (or `values`, as `inputSchema`) and starts the sink tail. */
  async prepare(n: number, values: { uuid: string }[] = Array.from({ length: n }, (_, i) => makeInstruction(i))): Promise<this> {
    await this.open();
    await this.send(values);
    this.tail = await new SinkTail(this.kafka, this.output).start();
    return this;
  }

  /** Writes more records to the input (after `prepare`, e.g. while a stage runs); the check expects them too. */
  async send(values: { uuid: string }[]): Promise<void> {
    await produceRecords(this.kafka, this.serde, this.input, this.options.inputSchema ?? 'magpie.Instruction', values);
    for (const v of values) this.sent.push(v);
  }

  spawn(extra: Partial<StageProcessOptions> = {}): StageProcess {
    const p = new StageProcess({
      topology: this.file,
      brokers: this.options.brokers,
      prefix: this.prefix,
      label: `${this.prefix}-${this.processes.length + 1}`,
      ...(this.options.env ? { env: this.options.env } : {}),
      ...extra,
    });
    this.processes.push(p);
    return p;
  }

  /**
   * Resolves once the group of the stage (default: the scenario's) has committed its whole input. Only for an
   * input written without transactions: a transactional topic's commit markers take offsets of their own.
   */
  async drained(timeoutMs = 180_000, stageName = this.options.stage): Promise<void> {
    const stage = this.topology.stages.find((x) => x.name === stageName)!;
    const deadline = Date.now() + timeoutMs;
    let behind = 'not read yet';
    for (;;) {
      // A broker may be down or electing leaders: a failed look is just another look.
      const admin = this.kafka.admin();
      try {
        await admin.connect();
        const ends = await topicEndOffsets(admin, stage.input!);
        const [committed] = await admin.fetchOffsets({ groupId: stage.groupId, topics: [stage.input!] });
        const late = [...ends].filter(([p, { high }]) => BigInt(committed?.partitions.find((c) => c.partition === p)?.offset ?? '-1') < high);
        if (late.length === 0) return;
        behind = `partitions ${late.map(([p]) => p).join(',')} behind`;
      } catch (err) {
        behind = `offsets unreadable: ${String(err)}`;
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
      if (Date.now() > deadline) {
        const logs = this.processes.map((p) => `--- ${p.logFile}\n${p.problems()}`).join('\n');
        throw new Error(`group ${stage.groupId} not at the end of ${stage.input} after ${timeoutMs} ms (${behind})\n${logs}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Exact check of the sink against what was sent, and the dead letters. */
  async check(expected: Iterable<string> = this.sent.map((s) => s.uuid)): Promise<SinkCheck & { deadLettered: number }> {
    const result = await checkSink(this.kafka, this.serde, this.output, this.options.outputSchema ?? 'magpie.Instruction', expected);
    return { ...result, deadLettered: await countRecords(this.kafka, this.deadLetter) };
  }

  /** `liftedAt`: when the fault ended (process restarted, broker back, server healthy); recovery counts from there. */
  row(fault: string, result: SinkCheck & { deadLettered: number }, liftedAt: number, note?: string): FaultRow {
    const first = this.tail.firstArrivalAfter(liftedAt);
    return {
      fault,
      in: this.sent.length,
      out: result.out,
      duplicates: result.duplicates,
      lost: result.lost.length,
      deadLettered: result.deadLettered,
      recoveryMs: first === undefined ? undefined : first - liftedAt,
      ...(note ? { note } : {}),
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.processes.map((p) => p.stop()));
    await this.tail?.stop();
  }
}
