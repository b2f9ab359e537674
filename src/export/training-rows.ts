import { errorMessage, isRetryable } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { RawRecord } from '../kafka/route.js';
import { SCHEMA_HEADER, type RecordSerde } from '../serde/serde.js';
import { SCHEMA_NAMES, type SchemaName } from '../serde/schemas.js';
import { formatRecord, SKIP_REASONS, type ExportFormat, type SkipReason } from './formats.js';

export interface ExportSummary {
  written: number;
  skipped: Partial<Record<SkipReason, number>>;
  /** Files completed, in order. */
  files: string[];
}

/** Turns Kafka records into rows of one training format, counting the records it leaves out and why. */
export class TrainingRows {
  readonly summary: ExportSummary = { written: 0, skipped: {}, files: [] };

  constructor(
    private readonly serde: RecordSerde,
    private readonly format: ExportFormat,
    private readonly logger: Logger,
    /** Reader schema for every record; default: the writer's, named in the record's headers. */
    private readonly schema?: SchemaName,
  ) {}

  /** The row for `raw`, or undefined when it is skipped (and counted). */
  async rowOf(raw: RawRecord): Promise<Record<string, unknown> | undefined> {
    const schema = this.schema ?? (raw.headers[SCHEMA_HEADER] as SchemaName | undefined);
    let value: unknown;
    try {
      if (!schema || !SCHEMA_NAMES.includes(schema)) throw new Error(`header ${SCHEMA_HEADER} is ${schema === undefined ? 'missing' : `'${schema}', not one of ${SCHEMA_NAMES.join(', ')}`}: pass --schema`);
      value = await this.serde.decode(schema, raw.value, raw.headers, raw);
    } catch (err) {
      if (isRetryable(err)) throw err;
      return this.skip('undecodable', raw, errorMessage(err));
    }
    const formatted = formatRecord(this.format, { schema, value });
    if ('skip' in formatted) return this.skip(formatted.skip, raw, `${schema} record`);
    this.summary.written++;
    return formatted.row;
  }

  private skip(reason: SkipReason, raw: RawRecord, detail: string): undefined {
    const count = (this.summary.skipped[reason] ?? 0) + 1;
    this.summary.skipped[reason] = count;
    // The first of each reason is worth a look; the rest are in the summary.
    if (count === 1) this.logger.warn({ reason, partition: raw.partition, offset: raw.offset, detail }, `skipping records: ${SKIP_REASONS[reason]}`);
    return undefined;
  }
}

/** The summary as lines for a person: what was written, and each skip reason with its count. */
export function describeSummary(summary: ExportSummary): string {
  const lines = [`${summary.written} record${summary.written === 1 ? '' : 's'} written to ${summary.files.length} file${summary.files.length === 1 ? '' : 's'}`];
  for (const [reason, count] of Object.entries(summary.skipped)) lines.push(`  skipped ${count}: ${SKIP_REASONS[reason as SkipReason]}`);
  return lines.join('\n');
}
