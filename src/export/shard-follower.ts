import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Kafka } from 'kafkajs';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { setGroupOffsets } from '../kafka/admin.js';
import { partitionRanges, readTopic, type ReadControl } from '../kafka/read-topic.js';
import type { RawRecord } from '../kafka/route.js';
import type { RecordSerde } from '../serde/serde.js';
import type { SchemaName } from '../serde/schemas.js';
import type { ExportFormat, FormatOptions } from './formats.js';
import { DurableFile, fsyncPath, type FileKind } from './row-writer.js';
import { TrainingRows, type ExportSummary } from './training-rows.js';

export interface FollowOptions {
  kafka: Kafka;
  serde: RecordSerde;
  logger: Logger;
  topic: string;
  format: ExportFormat;
  kind: FileKind;
  dir: string;
  groupId: string;
  /** A shard is closed once it holds this many records, or this many bytes (see RowWriter.bytes); at least one is given. */
  shardRecords?: number;
  shardBytes?: number;
  schema?: SchemaName;
  formatOptions?: FormatOptions;
  /** Stops like a crash: the open shard is left unfinished (`.tmp`) and its offsets uncommitted. */
  signal?: AbortSignal;
  onShard?: (shard: { file: string; records: number; bytes: number }) => void;
}

export interface ShardFollower {
  /** Resolves when the follower has stopped (stop(), the signal, or a failure, which rejects). */
  readonly done: Promise<ExportSummary>;
  /** Closes the open shard as a complete (smaller) one, commits its offsets and stops. */
  stop(): Promise<ExportSummary>;
  /** Counts so far. */
  readonly summary: ExportSummary;
}

/**
 * Written before a shard is renamed into place: which shard is about to become complete and the group's
 * position (every partition) after it. A restart that finds the shard complete commits this position, so a
 * crash between the rename and the Kafka commit still yields each record in exactly one complete shard.
 */
interface ShardJournal {
  topic: string;
  groupId: string;
  shard: string;
  offsets: { partition: number; offset: string }[];
}

export const JOURNAL_FILE = '.magpie-shards.json';
const SHARD_NAME = /^shard-(\d{6,})\.(jsonl|parquet)$/;

export function shardFileName(n: number, kind: FileKind): string {
  return `shard-${String(n).padStart(6, '0')}.${kind}`;
}

async function writeAtomically(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text, { flush: true });
  await rename(`${file}.tmp`, file);
  await fsyncPath(path.dirname(file));
}

/**
 * Finishes what a crash interrupted: drops unfinished shards and commits a completed shard's position.
 * Returns the last shard number and the group's position.
 */
async function recover(options: FollowOptions): Promise<{ last: number; positions: Map<number, bigint> }> {
  const { dir, topic, groupId, kafka, logger } = options;
  await mkdir(dir, { recursive: true });
  const entries = await readdir(dir);
  const stale = entries.filter((e) => /^shard-\d+\..+\.tmp$/.test(e));
  await Promise.all(stale.map((e) => rm(path.join(dir, e), { force: true })));
  if (stale.length) logger.warn({ dir, files: stale }, 'removed unfinished shards of an earlier run; their records will be read again');
  const last = Math.max(0, ...entries.map((e) => SHARD_NAME.exec(e)).filter((m) => m !== null).map((m) => Number(m[1])));

  let journal: ShardJournal | undefined;
  try {
    journal = JSON.parse(await readFile(path.join(dir, JOURNAL_FILE), 'utf8')) as ShardJournal;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (journal && (journal.topic !== topic || journal.groupId !== groupId)) {
    throw new ConfigError(`${dir} holds shards of topic ${journal.topic} under group ${journal.groupId}: give another --out-dir (or the same --topic and --group)`, { dir });
  }
  const positions = new Map((await partitionRanges(kafka, topic, groupId)).map((r) => [r.partition, r.start]));
  if (journal && entries.includes(journal.shard)) {
    const behind = journal.offsets.filter((o) => (positions.get(o.partition) ?? 0n) < BigInt(o.offset));
    if (behind.length) {
      logger.warn({ shard: journal.shard, offsets: behind }, 'shard was completed but its offsets not committed; committing them now');
      await setGroupOffsets(kafka, groupId, topic, behind);
      for (const o of behind) positions.set(o.partition, BigInt(o.offset));
    }
  }
  return { last, positions };
}

/**
 * Keeps consuming `topic` under `groupId` into rotated shard files `dir/shard-NNNNNN.jsonl|parquet`. A shard
 * is written as `.tmp`, fsynced, renamed and its directory fsynced before the offsets of its records are
 * committed: a shard is complete or absent, and an unfinished one's records go into a later shard.
 * One follower per group and directory.
 */
export async function followToShards(options: FollowOptions): Promise<ShardFollower> {
  const { topic, groupId, dir, kind, format, logger } = options;
  if (!options.shardRecords && !options.shardBytes) throw new ConfigError('give a shard size: --shard-records N or --shard-bytes B');
  let { last: shardNumber, positions } = await recover(options);
  const rows = new TrainingRows(options.serde, format, logger, options.schema, options.formatOptions);
  const reader = new AbortController();
  options.signal?.addEventListener('abort', () => reader.abort(options.signal!.reason), { once: true });

  let shard: DurableFile | undefined;
  // Next offset per partition of the records read since the last commit (skipped ones included).
  let offsets = new Map<number, bigint>();
  const positionAfter = () => [...new Map([...positions, ...offsets])].map(([partition, offset]) => ({ partition, offset: offset.toString() }));
  let control: ReadControl | undefined;
  let busy: Promise<void> = Promise.resolve();
  let stopping = false;
  let failure: unknown;

  const full = (s: DurableFile) => (options.shardRecords !== undefined && s.rows >= options.shardRecords) || (options.shardBytes !== undefined && s.bytes >= options.shardBytes);

  const completeShard = async () => {
    if (offsets.size === 0) return;
    const committed = positionAfter();
    if (shard) {
      const file = shard;
      const name = path.basename(file.path);
      await writeAtomically(path.join(dir, JOURNAL_FILE), JSON.stringify({ topic, groupId, shard: name, offsets: committed } satisfies ShardJournal));
      await file.commit();
      shard = undefined;
      rows.summary.files.push(file.path);
      logger.info({ shard: name, records: file.rows, bytes: file.bytes }, 'shard complete');
      options.onShard?.({ file: file.path, records: file.rows, bytes: file.bytes });
    }
    await control!.commit(committed);
    positions = new Map([...positions, ...offsets]);
    offsets = new Map();
  };

  const handle = async (raw: RawRecord, ctl: ReadControl) => {
    control = ctl;
    const row = await rows.rowOf(raw);
    if (row) {
      shard ??= await DurableFile.open(path.join(dir, shardFileName(++shardNumber, kind)), kind, format, options.formatOptions);
      await shard.write(row);
    }
    offsets.set(raw.partition, BigInt(raw.offset) + 1n);
    if (shard && full(shard)) await completeShard();
  };

  const reading = readTopic(
    options.kafka,
    topic,
    async (raw, ctl) => {
      if (stopping || failure !== undefined || reader.signal.aborted) return;
      busy = handle(raw, ctl).catch((err: unknown) => {
        failure = err;
        reader.abort(err);
      });
      await busy;
    },
    { follow: true, groupId, commit: false, signal: reader.signal },
  );
  logger.info({ topic, groupId, dir, nextShard: shardFileName(shardNumber + 1, kind) }, 'following topic into shards');

  const done = (async () => {
    try {
      await reading;
    } finally {
      // Reached only by a crash-like stop or a failure when a shard is still open: leave it unfinished.
      await shard?.abandon().catch(() => undefined);
    }
    if (failure !== undefined) throw failure;
    return rows.summary;
  })();

  return {
    done,
    summary: rows.summary,
    stop: async () => {
      if (!stopping && !reader.signal.aborted) {
        stopping = true;
        await busy;
        if (failure === undefined) await completeShard().catch((err: unknown) => (failure = err));
        reader.abort(new Error('export stopped'));
      }
      return done;
    },
  };
}
