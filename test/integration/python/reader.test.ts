/**
 * The Python reader (clients/python) on a topic a pipeline wrote, on the real broker: every record decodes to
 * what the TypeScript side decodes, and its dataset commits offsets only when a training step asks it to.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { createKafka } from '../../../src/kafka/client.js';
import { readTopic } from '../../../src/kafka/read-topic.js';
import { createKafkaSerde } from '../../../src/kafka/schema-store.js';
import { runTopology } from '../../../src/topology/build.js';
import { loadTopologyFile } from '../../../src/topology/load.js';
import { kafkaConfigSchema, serdeConfigSchema } from '../../../src/topology/schema.js';
import { PROJECT_ROOT, uniquePrefix } from '../../support/broker.js';
import { eventually, makeInstruction, produceRecords } from '../../support/records.js';
import { topologyTestContext } from '../../support/topology-run.js';

const run = promisify(execFile);
const { logger, bootstrap, track } = topologyTestContext();
const CLIENT = path.join(PROJECT_ROOT, 'clients', 'python');
const N = 24;

/** JSON as both sides print it: bytes as base64, timestamps as epoch milliseconds. */
const plain = (value: unknown) => JSON.parse(JSON.stringify(value, (_k, v: unknown) => (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('base64') : v))) as unknown;

async function python(args: string[], script?: string): Promise<string> {
  const { stdout } = await run('python3', script ? ['-c', script, ...args] : ['-m', 'magpie_reader', ...args], { cwd: CLIENT, timeout: 180_000, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

describe('Python reader (real broker)', () => {
  let topic: string;
  const kafka = createKafka(kafkaConfigSchema.parse({ brokers: [bootstrap] }), logger);
  const serde = createKafkaSerde(kafka, serdeConfigSchema.parse({}), logger);

  beforeAll(async () => {
    await run('python3', ['-c', 'import confluent_kafka, fastavro'], { timeout: 60_000 }).catch(async () => {
      await run('python3', ['-m', 'pip', 'install', '-q', 'confluent-kafka>=2.3', 'fastavro>=1.9'], { timeout: 600_000 });
    });
    const prefix = uniquePrefix('python');
    const topology = await loadTopologyFile('topologies/test/pass-through.yaml', { topicPrefix: prefix, brokers: [bootstrap] });
    const stage = topology.stages[0]!;
    topic = stage.ports.out!;
    track(await runTopology(topology, logger));
    await produceRecords(kafka, serde, stage.input!, 'magpie.Instruction', Array.from({ length: N }, (_, i) => makeInstruction(i, `Python reader instruction ${i} — ünïcode ✓`)));
    let copied = 0;
    await eventually(async () => {
      copied = 0;
      await readTopic(kafka, topic, () => {
        copied++;
      });
      return copied === N;
    }, 60_000, 1_000);
  }, 600_000);

  it('decodes every record of a pipeline topic exactly as the TypeScript side does', async () => {
    const ours = new Map<string, unknown>();
    await readTopic(kafka, topic, async (raw) => {
      ours.set(`${raw.partition}@${raw.offset}`, plain(await serde.decode('magpie.Instruction', raw.value, raw.headers)));
    });
    const lines = (await python(['--bootstrap', bootstrap, '--topic', topic, '--group', `${topic}.py-dump`, '--meta', '--idle-timeout', '5'])).trim().split('\n');
    const theirs = new Map(lines.map((l) => JSON.parse(l) as { partition: number; offset: number; value: unknown }).map((r) => [`${r.partition}@${r.offset}`, r.value]));
    expect(theirs.size).toBe(N);
    expect([...theirs.keys()].sort()).toEqual([...ours.keys()].sort());
    for (const [at, value] of ours) expect(theirs.get(at), at).toEqual(value);
  });

  it('as a dataset, commits offsets only when a training step asks it to', async () => {
    const group = `${topic}.py-train`;
    const script = `
import json, sys
from magpie_reader import MagpieDataset
bootstrap, topic, group, take, commit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "commit"
data = MagpieDataset(bootstrap, topic, group, max_records=take, idle_timeout=5)
uuids = [r["uuid"] for r in data]
if commit:
    data.commit()
data.close()
print(json.dumps(uuids))
`;
    const step = async (take: number, commit: boolean) => JSON.parse(await python([bootstrap, topic, group, String(take), commit ? 'commit' : 'no'], script)) as string[];
    const committed = async () => {
      const admin = kafka.admin();
      await admin.connect();
      try {
        const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
        return offsets!.partitions.map((p) => [p.partition, p.offset] as const).sort();
      } finally {
        await admin.disconnect();
      }
    };
    expect(await step(5, false)).toHaveLength(5);
    // Read but not committed: the group holds no offsets, a restart reads those records again.
    expect((await committed()).every(([, offset]) => offset === '-1')).toBe(true);
    const trained = await step(5, true);
    expect(trained).toHaveLength(5);
    // Committed after the step: a restart gets the rest, each record once.
    const rest = await step(N, true);
    expect(rest).toHaveLength(N - 5);
    expect(new Set([...trained, ...rest]).size).toBe(N);
    // After the last record of each partition (a transaction marker may follow it).
    const next = new Map<number, string>();
    await readTopic(kafka, topic, (raw) => {
      next.set(raw.partition, String(Number(raw.offset) + 1));
    });
    expect(await committed()).toEqual([...next].sort());
  });
});
