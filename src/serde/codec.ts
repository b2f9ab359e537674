import type { Type } from 'avsc';
import { SerdeError } from '../core/errors.js';
import type { SchemaName } from './schemas.js';

/** Header naming the writer schema (embedded format); informational, the fingerprint decides. */
export const SCHEMA_HEADER = 'magpie-schema';
/** Header with the writer schema's fingerprint (embedded format), see fingerprintOf. */
export const FINGERPRINT_HEADER = 'magpie-schema-fp';

/** Record headers as kafkajs hands them over (repeated keys arrive as arrays). */
export type RecordHeaders = Record<string, string | Buffer | (string | Buffer)[] | undefined>;

/** A header's text value; the last one wins when a key repeats. */
export function headerValue(headers: RecordHeaders, key: string): string | undefined {
  const raw = headers[key];
  const value = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  return value === undefined ? undefined : value.toString();
}

/** Where a record came from, for error messages. */
export interface RecordSource {
  topic: string;
  partition: number;
  offset: string;
}

/** An avsc type with the fingerprint that identifies its binary layout. */
export interface FingerprintedType {
  type: Type;
  fingerprint: string;
}

type Resolver = ReturnType<Type['createResolver']>;

export function describeRecord(source: RecordSource | undefined): string {
  return source ? `record at ${source.topic}[${source.partition}]@${source.offset}` : 'record';
}

/** Validates `value` against `type`, then encodes it; the error lists the offending field paths. */
export function encodeBody(schema: SchemaName, type: Type, value: unknown): Buffer {
  const problems: { path: string; problem: string }[] = [];
  const valid = type.isValid(value, {
    errorHook: (path: string[], bad: unknown, expected: Type) => {
      problems.push({ path: formatPath(path), problem: `expected ${typeLabel(expected)}, got ${valueLabel(bad)}` });
    },
  });
  if (!valid) {
    const shown = problems.slice(0, 5).map((p) => `${p.path}: ${p.problem}`);
    if (problems.length > shown.length) shown.push(`and ${problems.length - shown.length} more`);
    throw new SerdeError('SERDE_INVALID_VALUE', `${schema} value does not match its schema: ${shown.join('; ')}. Fix the code that builds it (types in src/serde/records.generated.ts).`, {
      details: { schema, fields: problems.map((p) => p.path) },
    });
  }
  return type.toBuffer(value);
}

/**
 * Decodes Avro bodies written with any compatible version of a reader's schema. Resolvers are cached
 * per reader and writer, and so are incompatibilities, so a stream of bad records costs one check.
 */
export class ResolvingDecoder {
  private readonly resolvers = new Map<string, Resolver | SerdeError>();

  decode(reader: FingerprintedType, writer: FingerprintedType, body: Buffer, source?: RecordSource): unknown {
    const resolver = reader.fingerprint === writer.fingerprint ? undefined : this.resolver(reader, writer, source);
    let decoded: { value: unknown; offset: number };
    try {
      decoded = reader.type.decode(body, 0, resolver);
    } catch (err) {
      throw corrupt(reader, writer, source, (err as Error).message, err);
    }
    if (decoded.offset === -1) throw corrupt(reader, writer, source, `truncated: ${body.length} bytes end inside the value`);
    if (decoded.offset !== body.length) throw corrupt(reader, writer, source, `${body.length - decoded.offset} trailing bytes after the value`);
    return decoded.value;
  }

  private resolver(reader: FingerprintedType, writer: FingerprintedType, source: RecordSource | undefined): Resolver {
    const key = `${reader.fingerprint}/${writer.fingerprint}`;
    let cached = this.resolvers.get(key);
    if (cached === undefined) {
      try {
        cached = reader.type.createResolver(writer.type);
      } catch (err) {
        cached = new SerdeError(
          'SERDE_INCOMPATIBLE',
          `${describeRecord(source)} was written as ${writer.type.name ?? writer.type.typeName} (schema ${short(writer.fingerprint)}), which cannot be read as ${reader.type.name} (schema ${short(reader.fingerprint)}): ${(err as Error).message}. ` +
            'Schemas may only evolve compatibly: add fields with defaults, rename with aliases; or read the topic with the schema it was written for.',
          { cause: err, details: { reader: reader.type.name, readerFingerprint: reader.fingerprint, writer: writer.type.name, writerFingerprint: writer.fingerprint } },
        );
      }
      this.resolvers.set(key, cached);
    }
    if (cached instanceof SerdeError) throw cached;
    return cached;
  }
}

function corrupt(reader: FingerprintedType, writer: FingerprintedType, source: RecordSource | undefined, detail: string, cause?: unknown): SerdeError {
  return new SerdeError(
    'SERDE_CORRUPT',
    `${describeRecord(source)} does not decode as ${reader.type.name} (writer schema ${short(writer.fingerprint)}): ${detail}. ` +
      'The bytes were damaged or not written with the schema the record names; it cannot be read as is: inspect it and fix its producer.',
    { cause, details: { reader: reader.type.name, writerFingerprint: writer.fingerprint, ...source } },
  );
}

function short(fingerprint: string): string {
  return fingerprint.slice(0, 12);
}

/** ['conversations', '0', 'from'] -> conversations[0].from */
function formatPath(path: string[]): string {
  if (path.length === 0) return '(the value itself)';
  return path.map((part, i) => (/^\d+$/.test(part) ? `[${part}]` : /^[A-Za-z_]\w*$/.test(part) ? (i === 0 ? part : `.${part}`) : `[${JSON.stringify(part)}]`)).join('');
}

function typeLabel(type: Type): string {
  if (type.name) return type.name;
  const branches = (type as { types?: Type[] }).types;
  if (branches) return branches.map(typeLabel).join(' | ');
  const underlying = (type as { underlyingType?: Type }).underlyingType;
  return underlying ? typeLabel(underlying) : type.typeName;
}

function valueLabel(value: unknown): string {
  if (value === undefined) return 'nothing (field missing)';
  const text = Buffer.isBuffer(value) ? `<${value.length} bytes>` : JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
