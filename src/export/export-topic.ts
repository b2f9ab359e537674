import { rm } from 'node:fs/promises';
import type { Kafka } from 'kafkajs';
import type { Logger } from '../core/logger.js';
import { setGroupOffsets } from '../kafka/admin.js';
import { readTopic, type PartitionRange } from '../kafka/read-topic.js';
import type { RecordSerde } from '../serde/serde.js';
import type { SchemaName } from '../serde/schemas.js';
import type { ExportFormat, FormatOptions } from './formats.js';
import { LongestEntries } from './longest.js';
import type { ReadProgress } from './progress.js';
import { DurableFile, type FileKind } from './row-writer.js';
import { TrainingRows, type ExportSummary } from './training-rows.js';

export interface ExportTopicOptions {
  kafka: Kafka;
  serde: RecordSerde;
  logger: Logger;
  topic: string;
  format: ExportFormat;
  out: string;
  kind: FileKind;
  /** Start from this group's committed offsets and commit the new ones once the file is durable. */
  groupId?: string;
  schema?: SchemaName;
  formatOptions?: FormatOptions;
  /** Keep only the records with the N longest responses (written in topic order once the read is done). */
  longest?: number;
  progress?: ReadProgress;
  /** Stops early: the records read so far are still written, and only their offsets committed. */
  signal?: AbortSignal;
}

/**
 * Exports a topic, from the beginning or a group's committed offsets up to the end offsets seen at the start,
 * into one file that is complete or absent. With a group, offsets are committed only after the file is durable,
 * so a failed export is simply run again.
 */
export async function exportTopic(options: ExportTopicOptions): Promise<ExportSummary & { interrupted: boolean }> {
  const { kafka, topic, groupId, progress } = options;
  const rows = new TrainingRows(options.serde, options.format, options.logger, options.schema, options.formatOptions);
  const longest = options.longest === undefined ? undefined : new LongestEntries<Record<string, unknown>>(options.longest);
  const file = await DurableFile.open(options.out, options.kind, options.format, options.formatOptions);
  let ranges: PartitionRange[] = [];
  const next = new Map<number, bigint>();
  try {
    await readTopic(
      kafka,
      topic,
      async (raw) => {
        const entry = await rows.entryOf(raw);
        if (entry && longest) longest.offer(entry.row, entry.responseLength);
        else if (entry) await file.write(entry.row);
        next.set(raw.partition, BigInt(raw.offset) + 1n);
        progress?.tick();
      },
      {
        ...(groupId ? { groupId } : {}),
        commit: false,
        ...(options.signal ? { signal: options.signal } : {}),
        onStart: (r) => {
          ranges = r;
          progress?.start(Number(r.reduce((sum, p) => sum + (p.end - p.start), 0n)));
        },
      },
    );
    if (longest) {
      for (const row of longest.items()) await file.write(row);
      rows.unwrite('not_longest', longest.dropped);
    }
    await file.commit();
  } catch (err) {
    await file.abandon().catch(() => undefined);
    await rm(DurableFile.tmpPath(options.out), { force: true });
    throw err;
  } finally {
    progress?.stop();
  }
  rows.summary.files.push(options.out);
  const interrupted = Boolean(options.signal?.aborted);
  if (groupId) {
    // A complete read reached every end offset (transaction markers after the last record included).
    const reached = new Map(interrupted ? [] : ranges.filter((r) => r.end > r.start).map((r) => [r.partition, r.end]));
    for (const [partition, offset] of next) if (!reached.has(partition)) reached.set(partition, offset);
    await setGroupOffsets(kafka, groupId, topic, [...reached].map(([partition, offset]) => ({ partition, offset: offset.toString() })));
  }
  return { ...rows.summary, interrupted };
}
