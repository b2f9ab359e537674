import { Agent, request } from 'undici';
import { SerdeError, errorMessage } from '../core/errors.js';
import { fingerprintOf, parseWriterSchema, schemaJsonOf, type SchemaSet } from './avro.js';
import { ResolvingDecoder, SCHEMA_HEADER, describeRecord, encodeBody, type FingerprintedType, type RecordHeaders, type RecordSource } from './codec.js';
import type { SchemaName } from './schemas.js';
import type { EncodedRecord, RecordSerde } from './serde.js';

export interface RegistryOptions {
  /** Base URL of the Confluent Schema Registry REST API, e.g. http://localhost:8081. */
  url: string;
  /** Basic-auth credentials; never logged nor put in error messages. */
  username?: string;
  password?: string;
  /** Per request, connection included; default 10 s. */
  timeoutMs?: number;
}

const MAGIC_BYTE = 0;
const WIRE_HEADER_BYTES = 5;
const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

/**
 * Confluent wire format (0x00, 4-byte big-endian schema id, Avro body) with schemas registered under
 * TopicNameStrategy subjects (`<topic>-value`), so Confluent tooling can read magpie topics and back.
 */
export class ConfluentSerde implements RecordSerde {
  private readonly decoder = new ResolvingDecoder();
  private readonly agent: Agent;
  private readonly baseUrl: URL;
  private readonly authorization: string | undefined;
  private readonly timeoutMs: number;
  /** Registered schema ids by subject and fingerprint. */
  private readonly ids = new Map<string, Promise<number>>();
  /** Writer schemas by registry id. */
  private readonly writers = new Map<number, Promise<FingerprintedType>>();

  constructor(
    private readonly schemas: SchemaSet,
    options: RegistryOptions,
  ) {
    this.baseUrl = new URL(options.url.endsWith('/') ? options.url : `${options.url}/`);
    const username = options.username ?? (this.baseUrl.username ? decodeURIComponent(this.baseUrl.username) : undefined);
    const password = options.password ?? decodeURIComponent(this.baseUrl.password);
    // Credentials travel in a header only, so no URL we print or pass on carries them.
    this.baseUrl.username = '';
    this.baseUrl.password = '';
    this.authorization = username === undefined ? undefined : `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.agent = new Agent({ connect: { timeout: this.timeoutMs } });
  }

  async encode(schema: SchemaName, value: unknown, topic?: string): Promise<EncodedRecord> {
    if (!topic) {
      throw new SerdeError('SERDE_REGISTRY', `encoding ${schema} with a schema registry needs the topic (its subject is <topic>-value): pass it to encode().`, { details: { schema } });
    }
    const type = this.schemas.getType(schema);
    const body = encodeBody(schema, type, value);
    const id = await this.schemaId(`${topic}-value`, schema);
    const header = Buffer.alloc(WIRE_HEADER_BYTES);
    header.writeUInt8(MAGIC_BYTE, 0);
    header.writeInt32BE(id, 1);
    return { value: Buffer.concat([header, body]), headers: { [SCHEMA_HEADER]: schema } };
  }

  async decode<T = unknown>(readerSchema: SchemaName, bytes: Buffer | null, _headers: RecordHeaders, source?: RecordSource): Promise<T> {
    const reader = { type: this.schemas.getType(readerSchema), fingerprint: this.schemas.fingerprint(readerSchema) };
    if (bytes === null || bytes.length < WIRE_HEADER_BYTES || bytes[0] !== MAGIC_BYTE) {
      const what = bytes === null ? 'has no value (a tombstone)' : bytes.length < WIRE_HEADER_BYTES ? `has only ${bytes.length} bytes` : `starts with byte 0x${bytes[0]!.toString(16).padStart(2, '0')}`;
      throw new SerdeError(
        'SERDE_CORRUPT',
        `${describeRecord(source)} ${what}, not the Confluent wire format (0x00 and a 4-byte schema id): if it was written in magpie's embedded format, unset serde.registry.`,
        { details: { ...source } },
      );
    }
    const writer = await this.writer(bytes.readInt32BE(1), source);
    return this.decoder.decode(reader, writer, bytes.subarray(WIRE_HEADER_BYTES), source) as T;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private schemaId(subject: string, schema: SchemaName): Promise<number> {
    const key = `${subject}/${this.schemas.fingerprint(schema)}`;
    let pending = this.ids.get(key);
    if (pending === undefined) {
      pending = this.register(subject, schema);
      this.ids.set(key, pending);
      pending.catch(() => this.ids.delete(key));
    }
    return pending;
  }

  private async register(subject: string, schema: SchemaName): Promise<number> {
    const path = `subjects/${encodeURIComponent(subject)}/versions`;
    const { status, body } = await this.call('POST', path, { schema: schemaJsonOf(this.schemas.getType(schema)) });
    if (status === 409) {
      throw new SerdeError(
        'SERDE_INCOMPATIBLE',
        `the schema registry refuses ${schema} under subject ${subject} as incompatible with the versions it holds: ${registryMessage(body)}. Evolve schemas compatibly (add fields with defaults) or change the subject's compatibility level.`,
        { details: { schema, subject } },
      );
    }
    if (status !== 200) throw this.httpError('POST', path, status, body);
    const id = (body as { id?: unknown }).id;
    if (typeof id !== 'number') throw this.httpError('POST', path, status, body);
    return id;
  }

  private writer(id: number, source: RecordSource | undefined): Promise<FingerprintedType> {
    let pending = this.writers.get(id);
    if (pending === undefined) {
      pending = this.fetchWriter(id, source);
      this.writers.set(id, pending);
      pending.catch(() => this.writers.delete(id));
    }
    return pending;
  }

  private async fetchWriter(id: number, source: RecordSource | undefined): Promise<FingerprintedType> {
    const path = `schemas/ids/${id}`;
    const { status, body } = await this.call('GET', path);
    if (status === 404) {
      throw new SerdeError('SERDE_UNKNOWN_SCHEMA', `${describeRecord(source)} names schema id ${id}, which the registry at ${this.baseUrl.href} does not know: was it written against another registry?`, {
        details: { ...source, schemaId: id },
      });
    }
    if (status !== 200) throw this.httpError('GET', path, status, body);
    const { schema, schemaType } = body as { schema?: unknown; schemaType?: unknown };
    if (schemaType !== undefined && schemaType !== 'AVRO') {
      throw new SerdeError('SERDE_UNKNOWN_SCHEMA', `${describeRecord(source)} was written with a ${String(schemaType)} schema (id ${id}); magpie reads Avro only.`, { details: { ...source, schemaId: id } });
    }
    if (typeof schema !== 'string') throw this.httpError('GET', path, status, body);
    try {
      const type = parseWriterSchema(schema);
      return { type, fingerprint: fingerprintOf(type) };
    } catch (err) {
      throw new SerdeError('SERDE_REGISTRY', `schema id ${id} from the registry is not a valid Avro schema: ${errorMessage(err)}.`, { cause: err, details: { schemaId: id } });
    }
  }

  private async call(method: 'GET' | 'POST', path: string, payload?: unknown): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = { accept: CONTENT_TYPE };
    if (payload !== undefined) headers['content-type'] = CONTENT_TYPE;
    if (this.authorization) headers.authorization = this.authorization;
    try {
      const response = await request(new URL(path, this.baseUrl), {
        method,
        headers,
        body: payload === undefined ? undefined : JSON.stringify(payload),
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const text = await response.body.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // Proxies and some errors answer with plain text; keep it for the message.
      }
      return { status: response.statusCode, body };
    } catch (err) {
      throw new SerdeError('SERDE_REGISTRY', `the schema registry at ${this.baseUrl.href} did not answer ${method} /${path}: ${errorMessage(err)}. Check serde.registry.url and that the registry is up.`, {
        retryable: true,
        cause: err,
        details: { method, path },
      });
    }
  }

  private httpError(method: string, path: string, status: number, body: unknown): SerdeError {
    const hint =
      status === 401 || status === 403
        ? 'Check serde.registry username and password.'
        : status >= 500 || status === 429 || status === 408
          ? 'The registry may be overloaded or restarting; the record will be retried.'
          : 'This is unexpected from a Confluent-compatible registry: check serde.registry.url.';
    return new SerdeError('SERDE_REGISTRY', `the schema registry at ${this.baseUrl.href} answered ${method} /${path} with HTTP ${status}: ${registryMessage(body)}. ${hint}`, {
      retryable: status >= 500 || status === 429 || status === 408,
      details: { method, path, status },
    });
  }
}

function registryMessage(body: unknown): string {
  const message = typeof body === 'object' && body !== null ? (body as { message?: unknown }).message : body;
  const text = typeof message === 'string' ? message : JSON.stringify(body);
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}
