/**
 * In-memory stand-ins for what the runners take: the kafkajs consumer and admin they use (a Kafka whose
 * consumer() and admin() return these), and a Committer that records what it is asked to write.
 */
import { EventEmitter } from 'node:events';
import type { EachBatchPayload, Kafka } from 'kafkajs';
import { pino } from 'pino';
import type { CommitRequest, Committer, InputPosition } from '../../../src/kafka/committer.js';
import type { RouteTarget } from '../../../src/kafka/route.js';
import type { OutboundMessage } from '../../../src/kafka/send-plan.js';
import type { SchemaName } from '../../../src/serde/schemas.js';

export const silent = pino({ level: 'silent' });

export function target(name: string, input: SchemaName | undefined = 'magpie.Instruction', out = `${name}.out`): RouteTarget {
  return {
    name,
    inputSchema: input,
    ports: { out },
    portSchemas: { out: 'magpie.Instruction' },
    rejects: 'rejects',
    deadLetter: 'dead-letter',
    retry: { attempts: 1, initialDelayMs: 1, maxDelayMs: 1 },
    deadLetterAfterAttempts: 1,
  };
}

/** The consumer events the runner listens to, named as kafkajs names them. */
const EVENTS = { GROUP_JOIN: 'consumer.group_join', END_BATCH_PROCESS: 'consumer.end_batch_process', CRASH: 'consumer.crash' };

export class FakeConsumer extends EventEmitter {
  readonly events = EVENTS;
  eachBatch: ((payload: EachBatchPayload) => Promise<void>) | undefined;
  /** pause / resume calls, in order: `pause 0,1`, `resume *` (a whole topic). */
  readonly flow: string[] = [];
  readonly seeks: { partition: number; offset: string }[] = [];
  readonly resolved: string[] = [];
  disconnected = false;

  async connect(): Promise<void> {}
  async subscribe(): Promise<void> {}
  async run(config: { eachBatch: (payload: EachBatchPayload) => Promise<void> }): Promise<void> {
    this.eachBatch = config.eachBatch;
  }
  pause(topics: { topic: string; partitions?: number[] }[]): void {
    for (const t of topics) this.flow.push(`pause ${t.partitions?.join(',') ?? '*'}`);
  }
  resume(topics: { topic: string; partitions?: number[] }[]): void {
    for (const t of topics) this.flow.push(`resume ${t.partitions?.join(',') ?? '*'}`);
  }
  seek(p: { topic: string; partition: number; offset: string }): void {
    this.seeks.push({ partition: p.partition, offset: p.offset });
  }
  async commitOffsets(): Promise<void> {}
  async disconnect(): Promise<void> {
    this.disconnected = true;
  }

  /** The group assigns these partitions of `topic` to this member. */
  assign(topic: string, partitions: number[]): void {
    this.emit(EVENTS.GROUP_JOIN, { payload: { memberAssignment: { [topic]: partitions } } });
  }

  /** kafkajs hands the runner a fetched batch: records with these offsets (values already encoded). */
  async deliver(topic: string, partition: number, records: { offset: number; value: Buffer; headers: Record<string, string> }[]): Promise<void> {
    if (!this.eachBatch) throw new Error('the runner has not started consuming');
    const messages = records.map((r) => ({ offset: String(r.offset), key: Buffer.from(`k${r.offset}`), value: r.value, headers: r.headers, timestamp: '1000', attributes: 0 }));
    const payload = {
      batch: { topic, partition, messages, lastOffset: () => messages.at(-1)!.offset },
      isRunning: () => true,
      isStale: () => false,
      heartbeat: async () => undefined,
      resolveOffset: (offset: string) => void this.resolved.push(offset),
    };
    await this.eachBatch(payload as unknown as EachBatchPayload);
  }
}

export class FakeAdmin {
  /** The group's committed offset of each input partition (absent: none). */
  readonly committed = new Map<number, string>();
  connected = 0;
  async connect(): Promise<void> {
    this.connected++;
  }
  async disconnect(): Promise<void> {
    this.connected--;
  }
  /** Topics whose configs were asked for. */
  readonly described: string[] = [];
  async describeConfigs(req: { resources: { name: string }[] }) {
    this.described.push(...req.resources.map((r) => r.name));
    return { resources: req.resources.map((r) => ({ resourceName: r.name, configEntries: [{ configName: 'max.message.bytes', configValue: '1048588' }] })) };
  }
  /** Partitions of every topic asked about. */
  partitions = 3;
  async listTopics(): Promise<string[]> {
    return [...this.described];
  }
  async fetchTopicMetadata(req: { topics: string[] }) {
    return { topics: req.topics.map((name) => ({ name, partitions: Array.from({ length: this.partitions }, (_, partitionId) => ({ partitionId })) })) };
  }
  async fetchOffsets(req: { topics: string[] }) {
    return req.topics.map((topic) => ({ topic, partitions: [...this.committed].map(([partition, offset]) => ({ partition, offset })) }));
  }
}

/** A Kafka whose consumer and admin are the fakes above (the runners use nothing else of it when given a committer). */
/** `consumers`: every consumer the runner asked for, `consumer` first; later ones are new fakes. */
export function fakeKafka(consumer = new FakeConsumer(), admin = new FakeAdmin()): { kafka: Kafka; consumer: FakeConsumer; consumers: FakeConsumer[]; admin: FakeAdmin } {
  const consumers: FakeConsumer[] = [];
  const kafka = {
    consumer: () => {
      const next = consumers.length === 0 ? consumer : new FakeConsumer();
      consumers.push(next);
      return next;
    },
    admin: () => admin,
  };
  return { kafka: kafka as unknown as Kafka, consumer, consumers, admin };
}

export interface RecordedCommit {
  writer: string;
  byTopic: Map<string, OutboundMessage[]>;
  input?: InputPosition;
}

/** Records commits and fences; `failCommits` scripts the answers of the next commits. */
export class RecordingCommitter implements Committer {
  readonly commits: RecordedCommit[] = [];
  readonly fences: string[] = [];
  /** Everything in call order: `fence w`, `commit w`. */
  readonly calls: string[] = [];
  closed = false;
  private plan: unknown[] = [];

  /** The next commits, in order: null succeeds, anything else is thrown. */
  failCommits(...plan: unknown[]): void {
    this.plan.push(...plan);
  }

  private fencePlan: unknown[] = [];

  /** The next fences, in order: null succeeds, anything else is thrown. */
  failFences(...plan: unknown[]): void {
    this.fencePlan.push(...plan);
  }

  async fence(writer: string): Promise<void> {
    this.fences.push(writer);
    this.calls.push(`fence ${writer}`);
    const failure = this.fencePlan.shift();
    if (failure !== undefined && failure !== null) throw failure;
  }
  async commit(req: CommitRequest, commitOffsets: (position: InputPosition) => Promise<void>): Promise<void> {
    this.calls.push(`commit ${req.writer}`);
    const failure = this.plan.shift();
    if (failure !== undefined && failure !== null) throw failure;
    this.commits.push({ writer: req.writer, byTopic: new Map(req.byTopic), ...(req.input ? { input: req.input } : {}) });
    if (req.input) await commitOffsets(req.input);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A promise with its resolve at hand. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Waits until `check` holds (a few macrotask turns at a time), failing after `turns` tries. */
export async function until(check: () => boolean, what: string, turns = 500): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`never happened: ${what}`);
}
