/**
 * Where writer schemas live for the embedded format: records carry only a fingerprint header, and a
 * reader with another schema version looks the writer's schema up here by that fingerprint.
 */
export interface SchemaStore {
  /** Stores a writer schema's JSON under its fingerprint; idempotent. */
  put(fingerprint: string, schemaJson: string): Promise<void>;
  /** The schema JSON stored under `fingerprint`, or undefined when no writer has published it. */
  get(fingerprint: string): Promise<string | undefined>;
  close?(): Promise<void>;
}

/** A store that lives and dies with the process: unit tests, and single-process runs without Kafka. */
export class InMemorySchemaStore implements SchemaStore {
  private readonly schemas = new Map<string, string>();

  async put(fingerprint: string, schemaJson: string): Promise<void> {
    this.schemas.set(fingerprint, schemaJson);
  }

  async get(fingerprint: string): Promise<string | undefined> {
    return this.schemas.get(fingerprint);
  }
}
