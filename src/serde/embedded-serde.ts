import { SerdeError, errorMessage } from '../core/errors.js';
import { fingerprintOf, parseWriterSchema, schemaJsonOf, type SchemaSet } from './avro.js';
import {
  FINGERPRINT_HEADER,
  ResolvingDecoder,
  SCHEMA_HEADER,
  describeRecord,
  encodeBody,
  headerValue,
  type FingerprintedType,
  type RecordHeaders,
  type RecordSource,
} from './codec.js';
import type { SchemaStore } from './schema-store.js';
import type { SchemaName } from './schemas.js';
import type { EncodedRecord, RecordSerde } from './serde.js';

/**
 * magpie's own format: the value is the bare Avro body, headers name the writer schema and its
 * fingerprint, and writer schemas are shared through a SchemaStore keyed by fingerprint.
 */
export class EmbeddedSerde implements RecordSerde {
  private readonly decoder = new ResolvingDecoder();
  /** Fingerprints this process has stored (or is storing): each is published once. */
  private readonly published = new Map<string, Promise<void>>();
  /** Writer schemas by fingerprint; a lookup that found nothing is dropped so a later record asks again. */
  private readonly writers = new Map<string, Promise<FingerprintedType | undefined>>();

  constructor(
    private readonly schemas: SchemaSet,
    private readonly store: SchemaStore,
  ) {
    for (const type of schemas.types) this.writers.set(fingerprintOf(type), Promise.resolve({ type, fingerprint: fingerprintOf(type) }));
  }

  async encode(schema: SchemaName, value: unknown): Promise<EncodedRecord> {
    const type = this.schemas.getType(schema);
    const fingerprint = this.schemas.fingerprint(schema);
    const body = encodeBody(schema, type, value);
    // Before the first record goes out, so no reader ever meets a fingerprint it cannot look up.
    await this.publish(schema, fingerprint, () => schemaJsonOf(type));
    return { value: body, headers: { [SCHEMA_HEADER]: schema, [FINGERPRINT_HEADER]: fingerprint } };
  }

  async decode<T = unknown>(readerSchema: SchemaName, bytes: Buffer | null, headers: RecordHeaders, source?: RecordSource): Promise<T> {
    const reader = { type: this.schemas.getType(readerSchema), fingerprint: this.schemas.fingerprint(readerSchema) };
    if (bytes === null) {
      throw new SerdeError('SERDE_CORRUPT', `${describeRecord(source)} has no value (a tombstone) where a ${readerSchema} was expected: only magpie should write to this topic.`, { details: { ...source } });
    }
    const fingerprint = headerValue(headers, FINGERPRINT_HEADER);
    if (!fingerprint) {
      throw new SerdeError(
        'SERDE_UNKNOWN_SCHEMA',
        `${describeRecord(source)} has no ${FINGERPRINT_HEADER} header: was it produced by magpie? Use \`magpie produce\`, or set serde.registry if the topic holds Confluent-format records.`,
        { details: { ...source } },
      );
    }
    const writer = fingerprint === reader.fingerprint ? reader : await this.writer(fingerprint, headerValue(headers, SCHEMA_HEADER), source);
    return this.decoder.decode(reader, writer, bytes, source) as T;
  }

  async close(): Promise<void> {
    await this.store.close?.();
  }

  /** `schemaJson` is only built for a fingerprint not published yet: once per schema, not once per record. */
  private publish(schema: SchemaName, fingerprint: string, schemaJson: () => string): Promise<void> {
    let pending = this.published.get(fingerprint);
    if (pending === undefined) {
      pending = this.store.put(fingerprint, schemaJson()).catch((err: unknown) => {
        this.published.delete(fingerprint);
        throw new SerdeError(
          'SERDE_REGISTRY',
          `could not publish the ${schema} schema (${fingerprint.slice(0, 12)}) to the schema store: ${errorMessage(err)}. Records wait for it, since readers need it to decode them: check the Kafka connection.`,
          { retryable: true, cause: err, details: { schema, fingerprint } },
        );
      });
      this.published.set(fingerprint, pending);
    }
    return pending;
  }

  private async writer(fingerprint: string, writerName: string | undefined, source: RecordSource | undefined): Promise<FingerprintedType> {
    let pending = this.writers.get(fingerprint);
    if (pending === undefined) {
      pending = this.lookUp(fingerprint);
      this.writers.set(fingerprint, pending);
      pending.then(
        (found) => {
          if (found === undefined) this.writers.delete(fingerprint);
        },
        () => this.writers.delete(fingerprint),
      );
    }
    const found = await pending;
    if (found === undefined) {
      throw new SerdeError(
        'SERDE_UNKNOWN_SCHEMA',
        `${describeRecord(source)} was written with schema ${writerName ?? '(unnamed)'} ${fingerprint}, which is not in the schema store: ` +
          'its producer did not publish it (a producer without the Kafka schema store?) or the store topic was deleted. Produce with magpie and the same schema store topic.',
        { details: { ...source, writer: writerName, fingerprint } },
      );
    }
    return found;
  }

  private async lookUp(fingerprint: string): Promise<FingerprintedType | undefined> {
    let json: string | undefined;
    try {
      json = await this.store.get(fingerprint);
    } catch (err) {
      throw new SerdeError('SERDE_REGISTRY', `could not read schema ${fingerprint.slice(0, 12)} from the schema store: ${errorMessage(err)}. Check the Kafka connection.`, {
        retryable: true,
        cause: err,
        details: { fingerprint },
      });
    }
    if (json === undefined) return undefined;
    let type;
    try {
      type = parseWriterSchema(json);
    } catch (err) {
      throw new SerdeError('SERDE_REGISTRY', `the schema store entry ${fingerprint} is not a valid Avro schema (${errorMessage(err)}): the store topic holds foreign data.`, { cause: err, details: { fingerprint } });
    }
    if (fingerprintOf(type) !== fingerprint) {
      throw new SerdeError('SERDE_REGISTRY', `the schema store entry ${fingerprint} holds a schema with fingerprint ${fingerprintOf(type)}: the store topic holds foreign data.`, { details: { fingerprint } });
    }
    return { type, fingerprint };
  }
}
