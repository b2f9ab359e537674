import { open, rename, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { ExportFormat, FormatOptions } from './formats.js';

export type FileKind = 'jsonl' | 'parquet';

/** Appends rows to one file. */
export interface RowWriter {
  write(row: Record<string, unknown>): Promise<void>;
  readonly rows: number;
  /** Size of the rows so far: exact for JSONL; for Parquet the rows' JSON size (its compressed columns are smaller). */
  readonly bytes: number;
  /** Writes what is buffered, fsyncs and closes: the file's content is on disk when this resolves. */
  close(): Promise<void>;
  /** Closes without finishing the file, leaving it as a crash would. */
  abandon(): Promise<void>;
}

const FLUSH_BYTES = 1 << 20;

export async function fsyncPath(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

class JsonlWriter implements RowWriter {
  rows = 0;
  bytes = 0;
  private buffered: string[] = [];
  private bufferedBytes = 0;

  constructor(private readonly handle: FileHandle) {}

  async write(row: Record<string, unknown>): Promise<void> {
    const line = `${JSON.stringify(row)}\n`;
    const size = Buffer.byteLength(line);
    this.buffered.push(line);
    this.bufferedBytes += size;
    this.bytes += size;
    this.rows++;
    if (this.bufferedBytes >= FLUSH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.buffered.length === 0) return;
    const chunk = this.buffered.join('');
    this.buffered = [];
    this.bufferedBytes = 0;
    await this.handle.write(chunk);
  }

  async close(): Promise<void> {
    try {
      await this.flush();
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
  }

  abandon(): Promise<void> {
    return this.handle.close();
  }
}

type ParquetWriterInstance = Awaited<ReturnType<typeof import('@dsnp/parquetjs').ParquetWriter.openFile>>;

class ParquetRowWriter implements RowWriter {
  rows = 0;
  bytes = 0;

  constructor(
    private readonly writer: ParquetWriterInstance,
    private readonly file: string,
  ) {}

  async write(row: Record<string, unknown>): Promise<void> {
    await this.writer.appendRow(row);
    this.bytes += Buffer.byteLength(JSON.stringify(row)) + 1;
    this.rows++;
  }

  async close(): Promise<void> {
    await this.writer.close();
    await fsyncPath(this.file);
  }

  async abandon(): Promise<void> {
    // The writer holds whole row groups in memory and has no way to drop them: leave the file unfinished.
    await this.writer.envelopeWriter?.close();
  }
}

export async function openRowWriter(file: string, kind: FileKind, format: ExportFormat, options?: FormatOptions): Promise<RowWriter> {
  if (kind === 'jsonl') return new JsonlWriter(await open(file, 'w'));
  // Loaded on first use: JSONL exports do not pay for the Parquet library.
  const [{ ParquetSchema, ParquetWriter }, { parquetSchemaOf }] = await Promise.all([import('@dsnp/parquetjs'), import('./parquet-schemas.js')]);
  return new ParquetRowWriter(await ParquetWriter.openFile(new ParquetSchema(parquetSchemaOf(format, options)), file), file);
}

/**
 * A file that is complete or absent: rows go to `<path>.tmp`, and `commit()` fsyncs it, renames it to `path`
 * (atomic) and fsyncs the directory, so the rename itself survives a power cut.
 */
export class DurableFile {
  private constructor(
    readonly path: string,
    private readonly writer: RowWriter,
  ) {}

  static tmpPath(file: string): string {
    return `${file}.tmp`;
  }

  static async open(file: string, kind: FileKind, format: ExportFormat, options?: FormatOptions): Promise<DurableFile> {
    return new DurableFile(file, await openRowWriter(DurableFile.tmpPath(file), kind, format, options));
  }

  get rows(): number {
    return this.writer.rows;
  }

  get bytes(): number {
    return this.writer.bytes;
  }

  write(row: Record<string, unknown>): Promise<void> {
    return this.writer.write(row);
  }

  async commit(): Promise<void> {
    await this.writer.close();
    await rename(DurableFile.tmpPath(this.path), this.path);
    await fsyncPath(path.dirname(this.path));
  }

  abandon(): Promise<void> {
    return this.writer.abandon();
  }
}

export function fileKindOf(file: string, parquetFlag: boolean | undefined): FileKind {
  return parquetFlag || file.toLowerCase().endsWith('.parquet') ? 'parquet' : 'jsonl';
}
