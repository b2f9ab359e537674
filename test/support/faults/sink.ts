/**
 * What fault-injection tests observe and report: a live tail of the sink topic (how many records have come
 * out, and when), the exact check of the sink against the records sent, and the summary table.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Consumer, Kafka } from 'kafkajs';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { readTopic } from '../../../src/kafka/read-topic.js';
import type { RecordSerde } from '../../../src/serde/serde.js';
import type { SchemaName } from '../../../src/serde/schemas.js';
import { PROJECT_ROOT } from '../broker.js';

/** Follows a topic (committed records only) and notes when each record arrived. */
export class SinkTail {
  count = 0;
  private readonly arrivals: number[] = [];
  private consumer: Consumer | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly kafka: Kafka,
    private readonly topic: string,
  ) {}

  async start(): Promise<this> {
    const consumer = this.kafka.consumer({ groupId: `fault-tail-${randomUUID()}`, readUncommitted: false, allowAutoTopicCreation: false, sessionTimeout: 10_000, heartbeatInterval: 1_000 });
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topics: [this.topic], fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        const now = Date.now();
        for (let i = 0; i < batch.messages.length; i++) this.arrivals.push(now);
        this.count += batch.messages.length;
        for (const w of [...this.waiters]) w();
      },
    });
    return this;
  }

  /** Resolves once at least `n` records have come out. */
  async waitFor(n: number, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.count < n) {
      if (Date.now() > deadline) throw new Error(`${this.topic}: ${this.count} records after ${timeoutMs} ms, waiting for ${n}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          this.waiters.delete(done);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(done, 250);
        this.waiters.add(done);
      });
    }
  }

  /** When the first record after `since` (epoch ms) arrived; undefined if none has. */
  firstArrivalAfter(since: number): number | undefined {
    return this.arrivals.find((t) => t > since);
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect().catch(() => undefined);
  }
}

export interface SinkCheck {
  /** Records in the sink topic, duplicates included. */
  out: number;
  /** Sink records whose uuid was there already. */
  duplicates: number;
  /** Sent uuids missing from the sink. */
  lost: string[];
  /** Sink uuids that were never sent. */
  unexpected: string[];
}

/** Reads a whole topic (committed records) and compares its uuids with the expected set. */
export async function checkSink(kafka: Kafka, serde: RecordSerde, topic: string, schema: SchemaName, expected: Iterable<string>, options: { byKey?: boolean } = {}): Promise<SinkCheck> {
  const seen = new Set<string>();
  let out = 0;
  let duplicates = 0;
  await readTopic(kafka, topic, async (raw) => {
    const uuid = options.byKey ? raw.key!.toString() : (await serde.decode<{ uuid: string }>(schema, raw.value, raw.headers)).uuid;
    out++;
    if (seen.has(uuid)) duplicates++;
    else seen.add(uuid);
  });
  const want = new Set(expected);
  return { out, duplicates, lost: [...want].filter((u) => !seen.has(u)), unexpected: [...seen].filter((u) => !want.has(u)) };
}

/** Records in a topic (committed, markers excluded). */
export async function countRecords(kafka: Kafka, topic: string): Promise<number> {
  return readTopic(kafka, topic, () => undefined);
}

export interface FaultRow {
  fault: string;
  in: number;
  out: number;
  duplicates: number;
  lost: number;
  deadLettered: number;
  /** From the end of the fault (restart, broker back, server healthy) to the first record out after it. */
  recoveryMs: number | undefined;
  note?: string;
}

export function formatTable(rows: FaultRow[]): string {
  const header = ['fault', 'records in', 'records out', 'duplicates', 'lost', 'dead-lettered', 'recovery', 'note'];
  const body = rows.map((r) => [r.fault, String(r.in), String(r.out), String(r.duplicates), String(r.lost), String(r.deadLettered), r.recoveryMs === undefined ? '-' : `${(r.recoveryMs / 1000).toFixed(1)} s`, r.note ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

type Patch = Record<string, unknown>;

function merge(base: unknown, patch: unknown): unknown {
  if (Array.isArray(base) && Array.isArray(patch)) {
    // Stages merge by name; a patch stage with a new name is appended.
    const out = base.map((item) => {
      const match = patch.find((p) => (p as Patch).name === (item as Patch).name);
      return match ? merge(item, match) : item;
    });
    for (const p of patch) if (!base.some((b) => (b as Patch).name === (p as Patch).name)) out.push(p);
    return out;
  }
  if (base && patch && typeof base === 'object' && typeof patch === 'object') {
    const out: Patch = { ...(base as Patch) };
    for (const [k, v] of Object.entries(patch)) out[k] = k in out ? merge(out[k], v) : v;
    return out;
  }
  return patch;
}

/**
 * A copy of a topology file with `patch` merged in (stages by name), written under .magpie/faults/, so a test
 * varies a shipped topology (a slower stage, replicated topics) without a second file to keep in step.
 */
export function deriveTopology(file: string, patch: Patch, label: string): string {
  const base = parseYaml(readFileSync(path.resolve(PROJECT_ROOT, file), 'utf8')) as unknown;
  const dir = path.join(process.env.MAGPIE_RUN_DIR ?? path.join(PROJECT_ROOT, '.magpie'), 'faults');
  mkdirSync(dir, { recursive: true });
  const out = path.join(dir, `${label}.yaml`);
  writeFileSync(out, `# derived from ${file} by a fault-injection test\n${stringifyYaml(merge(base, patch))}`);
  return out;
}
