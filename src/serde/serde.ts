import { ConfigError } from '../core/errors.js';
import { defaultSchemaSet, type SchemaSet } from './avro.js';
import type { RecordHeaders, RecordSource } from './codec.js';
import { ConfluentSerde, type RegistryOptions } from './confluent-serde.js';
import { EmbeddedSerde } from './embedded-serde.js';
import { InMemorySchemaStore, type SchemaStore } from './schema-store.js';
import type { SchemaName } from './schemas.js';

export { FINGERPRINT_HEADER, SCHEMA_HEADER, type RecordHeaders, type RecordSource } from './codec.js';
export type { RegistryOptions } from './confluent-serde.js';

export interface EncodedRecord {
  value: Buffer;
  headers: Record<string, string>;
}

export interface RecordSerde {
  /**
   * Validates and encodes a value of `schema`. `topic` is needed with a Confluent registry (the subject
   * is `<topic>-value`) and ignored otherwise. Throws SERDE_INVALID_VALUE naming the bad field paths.
   */
  encode(schema: SchemaName, value: unknown, topic?: string): Promise<EncodedRecord>;
  /**
   * Decodes a record written with any compatible version of `readerSchema` into the reader's shape.
   * `source` only makes error messages say which record failed.
   */
  decode<T = unknown>(readerSchema: SchemaName, bytes: Buffer | null, headers: RecordHeaders, source?: RecordSource): Promise<T>;
  /** Releases the schema store or the registry connections. */
  close(): Promise<void>;
}

export interface SerdeOptions {
  /** Schemas to write with and read as; default: schemas/ at the package root. */
  schemas?: SchemaSet;
  /**
   * Embedded format: where writer schemas are published and looked up by fingerprint. The serde owns it
   * and closes it. Default: in memory, which only resolves schema versions this process wrote itself;
   * use a KafkaSchemaStore when producers and consumers are separate processes.
   */
  schemaStore?: SchemaStore;
  /** Confluent Schema Registry: records use the Confluent wire format instead of magpie headers. */
  registry?: RegistryOptions;
}

export function createSerde(options: SerdeOptions = {}): RecordSerde {
  const schemas = options.schemas ?? defaultSchemaSet();
  if (options.registry) {
    if (options.schemaStore) throw new ConfigError('serde: set either registry (Confluent wire format) or schemaStore (embedded format), not both');
    return new ConfluentSerde(schemas, options.registry);
  }
  return new EmbeddedSerde(schemas, options.schemaStore ?? new InMemorySchemaStore());
}
