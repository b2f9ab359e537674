import { errorMessage, isRetryable } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { RawRecord } from '../kafka/route.js';
import { SCHEMA_HEADER, type RecordSerde } from '../serde/serde.js';
import { SCHEMA_NAMES, type SchemaName } from '../serde/schemas.js';
import { DEFAULT_FORMAT_OPTIONS, formatRecord, SKIP_REASONS, type ExportFormat, type FormatOptions, type SkipReason } from './formats.js';

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
    private readonly formatOptions: FormatOptions = DEFAULT_FORMAT_OPTIONS,
  ) {}

  /** The row for `raw`, or undefined when it is skipped (and counted). */
  async rowOf(raw: RawRecord): Promise<Record<string, unknown> | undefined> {
    return (await this.entryOf(raw))?.row;
  }

  /** The row for `raw` with the length of its response (characters; the chosen one of a preference pair). */
  async entryOf(raw: RawRecord): Promise<{ row: Record<string, unknown>; responseLength: number } | undefined> {
    const schema = this.schema ?? (raw.headers[SCHEMA_HEADER] as SchemaName | undefined);
    let value: unknown;
    try {
      if (!schema || !SCHEMA_NAMES.includes(schema)) throw new Error(`header ${SCHEMA_HEADER} is ${schema === undefined ? 'missing' : `'${schema}', not one of ${SCHEMA_NAMES.join(', ')}`}: pass --schema`);
      value = await this.serde.decode(schema, raw.value, raw.headers, raw);
    } catch (err) {
      if (isRetryable(err)) throw err;
      return this.skip('undecodable', raw, errorMessage(err));
    }
    const formatted = formatRecord(this.format, { schema, value }, this.formatOptions);
    if ('skip' in formatted) return this.skip(formatted.skip, raw, `${schema} record`);
    this.summary.written++;
    return { row: formatted.row, responseLength: responseLengthOf(value) };
  }

  /** Counts `n` rows that were made but, in the end, not written. */
  unwrite(reason: SkipReason, n: number): void {
    if (n === 0) return;
    this.summary.written -= n;
    this.summary.skipped[reason] = (this.summary.skipped[reason] ?? 0) + n;
  }

  private skip(reason: SkipReason, raw: RawRecord, detail: string): undefined {
    const count = (this.summary.skipped[reason] ?? 0) + 1;
    this.summary.skipped[reason] = count;
    // The first of each reason is worth a look; the rest are in the summary.
    if (count === 1) this.logger.warn({ reason, partition: raw.partition, offset: raw.offset, detail }, `skipping records: ${SKIP_REASONS[reason]}`);
    return undefined;
  }
}

function responseLengthOf(value: unknown): number {
  const v = value as { response_length?: unknown; response?: unknown; chosen?: unknown } | null;
  if (typeof v?.response_length === 'number') return v.response_length;
  const text = v?.response ?? v?.chosen;
  return typeof text === 'string' ? text.length : 0;
}

/** The summary as lines for a person: what was written, and each skip reason with its count. */
export function describeSummary(summary: ExportSummary): string {
  const lines = [`${summary.written} record${summary.written === 1 ? '' : 's'} written to ${summary.files.length} file${summary.files.length === 1 ? '' : 's'}`];
  for (const [reason, count] of Object.entries(summary.skipped)) lines.push(`  skipped ${count}: ${SKIP_REASONS[reason as SkipReason]}`);
  return lines.join('\n');
}
