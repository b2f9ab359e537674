import { setMaxListeners } from 'node:events';
import type { Kafka } from 'kafkajs';
import { readTopic } from '../kafka/read-topic.js';
import type { RawRecord } from '../kafka/route.js';
import type { DeadLetter, Rejected } from '../serde/records.generated.js';
import { SCHEMA_NAMES, type SchemaName } from '../serde/schemas.js';
import { SCHEMA_HEADER, type RecordSerde } from '../serde/serde.js';
import type { Topology } from './load.js';

/** One place a record was seen: written by a stage to a port, rejected, or dead-lettered. */
export interface TraceHop {
  /** The stage that wrote it; `(input)` for a topic no stage of the topology writes. */
  stage: string;
  kind: 'output' | 'reject' | 'dead-letter';
  /** Output port (`out`, `changelog`, …) for outputs. */
  port?: string;
  topic: string;
  partition: number;
  offset: string;
  /** Kafka record timestamp (ms): when the writing stage produced it. */
  timestamp: number;
  /** Reject rule and reason, or dead-letter code and reason. */
  detail?: string;
}

interface TopicRole {
  kind: TraceHop['kind'];
  writers: { stage: string; port?: string }[];
}

/** Who writes each topic of a topology, and as what. */
function topicRoles(topology: Topology): Map<string, TopicRole> {
  const roles = new Map<string, TopicRole>();
  const add = (topic: string, kind: TraceHop['kind'], stage: string, port?: string) => {
    const role = roles.get(topic) ?? roles.set(topic, { kind, writers: [] }).get(topic)!;
    role.writers.push({ stage, ...(port ? { port } : {}) });
  };
  for (const s of topology.stages) {
    for (const [port, topic] of Object.entries(s.ports)) add(topic, 'output', s.name, port);
    add(s.rejects, 'reject', s.name);
    add(s.deadLetter, 'dead-letter', s.name);
  }
  for (const s of topology.stages) if (s.input && !roles.has(s.input)) add(s.input, 'output', '(input)');
  return roles;
}

const uuidOf = (value: unknown): unknown => (value && typeof value === 'object' ? (value as { uuid?: unknown }).uuid : undefined);

/**
 * Every record of one uuid across the topics of a topology, oldest first: the stage outputs it went through,
 * and the reject or dead-letter record where it stopped. Records are keyed by uuid; rejects and dead
 * letters without a key are decoded to look inside. Reads each topic to its current end.
 */
export async function traceRecord(kafka: Kafka, serde: RecordSerde, topology: Topology, uuid: string, signal?: AbortSignal): Promise<TraceHop[]> {
  const hops: TraceHop[] = [];
  const roles = topicRoles(topology);
  // One reader per topic, each listening to the signal.
  if (signal) setMaxListeners(roles.size + 10, signal);
  const decode = async (raw: RawRecord): Promise<unknown> => {
    const schema = raw.headers[SCHEMA_HEADER] as SchemaName | undefined;
    if (!schema || !SCHEMA_NAMES.includes(schema)) return undefined;
    return serde.decode(schema, raw.value, raw.headers).catch(() => undefined);
  };
  await Promise.all(
    [...roles].map(([topic, role]) =>
      readTopic(
        kafka,
        topic,
        async (raw) => {
          const key = raw.key?.toString();
          if (key !== uuid && (role.kind === 'output' || key !== undefined)) return;
          const value = await decode(raw);
          const at = { topic, partition: raw.partition, offset: raw.offset, timestamp: Number(raw.timestamp) };
          if (role.kind === 'reject') {
            const r = value as Rejected | undefined;
            if (r && (r.uuid === uuid || key === uuid)) hops.push({ stage: r.stage, kind: 'reject', ...at, detail: `${r.rule}: ${r.reason}` });
          } else if (role.kind === 'dead-letter') {
            const d = value as DeadLetter | undefined;
            if (d && (key === uuid || d.source_key?.toString() === uuid)) hops.push({ stage: d.stage, kind: 'dead-letter', ...at, detail: `${d.code}: ${d.reason} (from ${d.source_topic} [${d.source_partition}@${d.source_offset}], ${d.attempts} attempt${d.attempts === 1 ? '' : 's'})` });
          } else if (value === undefined || uuidOf(value) === uuid || uuidOf(value) === undefined) {
            const writer = role.writers[0]!;
            hops.push({ stage: writer.stage, kind: 'output', ...(writer.port ? { port: writer.port } : {}), ...at });
          }
        },
        signal ? { signal } : {},
      ).catch((err: unknown) => {
        // A topic nothing has written to yet (e.g. no dead letter so far) holds no part of the trace.
        if ((err as { code?: string }).code !== 'KAFKA_UNKNOWN_TOPIC') throw err;
      }),
    ),
  );
  return hops.sort((a, b) => a.timestamp - b.timestamp || a.topic.localeCompare(b.topic));
}

/** The trace as lines a person reads: time, time since the previous hop, stage, what happened, where. */
export function describeTrace(uuid: string, hops: readonly TraceHop[]): string {
  if (hops.length === 0) return `${uuid}: not found in any topic of the topology`;
  const first = hops[0]!.timestamp;
  const lines = [`${uuid}: ${hops.length} record${hops.length === 1 ? '' : 's'}, ${((hops.at(-1)!.timestamp - first) / 1000).toFixed(1)} s from first to last`];
  let previous = first;
  for (const h of hops) {
    const time = new Date(h.timestamp).toISOString().slice(11, 23);
    const since = `+${((h.timestamp - previous) / 1000).toFixed(1)}s`.padStart(8);
    const where = `${h.topic} [${h.partition}@${h.offset}]`;
    const what = h.kind === 'output' ? `→ ${h.port === 'out' || !h.port ? '' : `${h.port}: `}${where}` : `${h.kind === 'reject' ? '✗ rejected' : '✗ dead-lettered'} ${h.detail} (${where})`;
    lines.push(`  ${time} ${since}  ${h.stage.padEnd(14)} ${what}`);
    previous = h.timestamp;
  }
  return lines.join('\n');
}
