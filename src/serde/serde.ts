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

/** A topology's `serde:` block (src/topology/schema.ts), validated there. */
export interface SerdeConfig {
  schemaTopic?: string;
  registry?: { url: string; usernameEnv?: string; passwordEnv?: string };
}

export interface SerdeOptions {
  /** Schemas to write with and read as; default: schemas/ at the package root. */
  schemas?: SchemaSet;
  /** Chooses the format: a registry means the Confluent wire format, else the embedded one. */
  config?: SerdeConfig;
  /** Overrides config.registry (credentials given directly rather than through environment variables). */
  registry?: RegistryOptions;
  /**
   * Where the embedded format keeps writer schemas (src/kafka/schema-store.ts keeps them in a topic); the
   * serde closes it. Without one, an in-memory store only resolves schema versions this process wrote itself.
   */
  schemaStore?: SchemaStore;
}

export function createSerde(options: SerdeOptions = {}): RecordSerde {
  const schemas = options.schemas ?? defaultSchemaSet();
  const registry = options.registry ?? registryFromConfig(options.config?.registry);
  if (registry) return new ConfluentSerde(schemas, registry);
  return new EmbeddedSerde(schemas, options.schemaStore ?? new InMemorySchemaStore());
}

function registryFromConfig(config: SerdeConfig['registry']): RegistryOptions | undefined {
  if (!config) return undefined;
  const secret = (envName: string | undefined, field: string) => {
    if (envName === undefined) return undefined;
    const value = process.env[envName];
    if (value === undefined) throw new ConfigError(`serde.registry.${field}: environment variable ${envName} is not set`, { envName });
    return value;
  };
  return { url: config.url, username: secret(config.usernameEnv, 'usernameEnv'), password: secret(config.passwordEnv, 'passwordEnv') };
}
