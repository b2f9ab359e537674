import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ParquetReader } from '@dsnp/parquetjs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { exportTopic } from '../../../src/export/export-topic.js';
import { followToShards, type ShardFollower } from '../../../src/export/shard-follower.js';
import { ensureTopics, setGroupOffsets } from '../../../src/kafka/admin.js';
import { createKafka } from '../../../src/kafka/client.js';
import { createSerde } from '../../../src/serde/serde.js';
import { kafkaConfigSchema } from '../../../src/topology/schema.js';
import { uniquePrefix } from '../../support/broker.js';
import { eventually, makeConversation, makeInstruction, produceRecords } from '../../support/records.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const kafka = createKafka(kafkaConfigSchema.parse({ brokers: inject('kafkaBootstrap') }), logger);
const serde = createSerde();
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'magpie-export-it-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function topicWith(name: string, from: number, count: number): Promise<string> {
  const topic = `${uniquePrefix(name)}.conversations`;
  await ensureTopics(kafka, [{ name: topic, partitions: 3, replicationFactor: 1 }]);
  await produce(topic, from, count);
  return topic;
}

const produce = (topic: string, from: number, count: number) =>
  produceRecords(kafka, serde, topic, 'magpie.Conversation', Array.from({ length: count }, (_, i) => makeConversation(from + i)));

const uuidOf = (i: number) => makeConversation(i).uuid;
const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => uuidOf(from + i)).sort();

async function jsonlUuids(files: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) for (const line of (await readFile(f, 'utf8')).split('\n').filter(Boolean)) out.push((JSON.parse(line) as { uuid: string }).uuid);
  return out.sort();
}

async function shardFiles(d: string): Promise<string[]> {
  return (await readdir(d)).filter((f) => /^shard-\d+\.jsonl$/.test(f)).sort().map((f) => path.join(d, f));
}

describe('magpie export', () => {
  it('exports a topic to the end as ShareGPT, counting what it skips; with a group, later exports get only new records', async () => {
    const topic = await topicWith('export-once', 0, 120);
    await produceRecords(kafka, serde, topic, 'magpie.Instruction', [makeInstruction(900), makeInstruction(901)]);
    const base = { kafka, serde, logger, topic, format: 'sharegpt' as const };

    const all = await exportTopic({ ...base, out: path.join(dir, 'all.jsonl'), kind: 'jsonl' });
    expect(all).toMatchObject({ written: 120, skipped: { not_a_conversation: 2 }, interrupted: false });
    expect(await jsonlUuids([path.join(dir, 'all.jsonl')])).toEqual(range(0, 120));

    const group = `${topic}.nightly`;
    const first = await exportTopic({ ...base, out: path.join(dir, 'night-1.jsonl'), kind: 'jsonl', groupId: group });
    expect(first.written).toBe(120);
    await produce(topic, 120, 30);
    const second = await exportTopic({ ...base, out: path.join(dir, 'night-2.parquet'), kind: 'parquet', groupId: group });
    expect(second).toMatchObject({ written: 30, skipped: {} });
    const reader = await ParquetReader.openFile(path.join(dir, 'night-2.parquet'));
    const cursor = reader.getCursor([['uuid']]);
    const uuids: string[] = [];
    for (let r = await cursor.next(); r; r = await cursor.next()) uuids.push((r as { uuid: string }).uuid);
    await reader.close();
    expect(uuids.sort()).toEqual(range(120, 30));
    // Nothing new: the export ends at once with an empty file instead of waiting for records.
    const third = await exportTopic({ ...base, out: path.join(dir, 'night-3.jsonl'), kind: 'jsonl', groupId: group });
    expect(third.written).toBe(0);
    expect(await readFile(path.join(dir, 'night-3.jsonl'), 'utf8')).toBe('');
  });

  it('--follow writes rotated shards, each record exactly once, and closes a partial shard on stop', async () => {
    const topic = await topicWith('follow', 0, 100);
    const out = path.join(dir, 'follow');
    const options = { kafka, serde, logger, topic, format: 'sharegpt' as const, kind: 'jsonl' as const, dir: out, groupId: `${topic}.train`, shardRecords: 30 };
    let follower: ShardFollower = await followToShards(options);
    await eventually(() => follower.summary.written === 100, 60_000, 100);
    await follower.stop();
    expect((await shardFiles(out)).map((f) => path.basename(f))).toEqual(['shard-000001.jsonl', 'shard-000002.jsonl', 'shard-000003.jsonl', 'shard-000004.jsonl']);
    expect(await jsonlUuids((await shardFiles(out)).slice(3))).toHaveLength(10);

    // A restart continues the numbering and reads only what is new.
    await produce(topic, 100, 15);
    follower = await followToShards(options);
    await eventually(() => follower.summary.written === 15, 60_000, 100);
    await follower.stop();
    expect(await jsonlUuids(await shardFiles(out))).toEqual(range(0, 115));
    expect(path.basename((await shardFiles(out)).at(-1)!)).toBe('shard-000005.jsonl');

    // The Kafka commit of the last shard lost (a crash right after its rename): the journal restores it.
    await setGroupOffsets(kafka, options.groupId, topic, [0, 1, 2].map((partition) => ({ partition, offset: '0' })));
    follower = await followToShards(options);
    await new Promise((r) => setTimeout(r, 3_000));
    await follower.stop();
    expect(follower.summary.written).toBe(0);
    expect(await jsonlUuids(await shardFiles(out))).toEqual(range(0, 115));
  });

  it('after a crash mid-shard, the unfinished shard is dropped and its records land in the next one', async () => {
    const topic = await topicWith('crash', 0, 100);
    const out = path.join(dir, 'crash');
    const options = { kafka, serde, logger, topic, format: 'sharegpt' as const, kind: 'jsonl' as const, dir: out, groupId: `${topic}.train`, shardRecords: 40 };
    const crash = new AbortController();
    const crashed = await followToShards({ ...options, signal: crash.signal });
    await eventually(() => crashed.summary.written === 100, 60_000, 100);
    crash.abort();
    await crashed.done;
    expect((await readdir(out)).filter((f) => !f.startsWith('.')).sort()).toEqual(['shard-000001.jsonl', 'shard-000002.jsonl', 'shard-000003.jsonl.tmp']);

    const restarted = await followToShards(options);
    await eventually(() => restarted.summary.written === 20, 60_000, 100);
    await restarted.stop();
    expect((await readdir(out)).filter((f) => !f.startsWith('.')).sort()).toEqual(['shard-000001.jsonl', 'shard-000002.jsonl', 'shard-000003.jsonl']);
    expect(await jsonlUuids(await shardFiles(out))).toEqual(range(0, 100));
  });
});
