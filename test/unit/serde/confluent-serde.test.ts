import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SerdeError } from '../../../src/core/errors.js';
import { createSerde, type RecordSerde, type RegistryOptions } from '../../../src/serde/serde.js';
import { SCHEMA_NAMES } from '../../../src/serde/schemas.js';
import { conversation, EXAMPLES, instruction, NEW_TAG_FIELD, schemasWithConversationField } from './fixtures.js';

/** The two endpoints of the Confluent Schema Registry REST API the serde uses, in memory. */
class FakeRegistry {
  readonly requests: string[] = [];
  /** Subjects that answer 409 to a registration. */
  readonly incompatibleSubjects = new Set<string>();
  /** When set, every request gets this status. */
  failWith: number | undefined;
  /** When set, requests are never answered. */
  hang = false;
  credentials: string | undefined;
  private readonly ids = new Map<string, number>();
  private readonly schemas: string[] = [];
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      void this.handle(req).then(({ status, body }) => {
        if (this.hang) return;
        res.writeHead(status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
        res.end(JSON.stringify(body));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private async handle(req: IncomingMessage): Promise<{ status: number; body: unknown }> {
    let text = '';
    for await (const chunk of req) text += String(chunk);
    this.requests.push(`${req.method} ${req.url}`);
    if (this.credentials !== undefined && req.headers.authorization !== `Basic ${Buffer.from(this.credentials).toString('base64')}`) {
      return { status: 401, body: { error_code: 401, message: 'Unauthorized' } };
    }
    if (this.failWith) return { status: this.failWith, body: { error_code: this.failWith * 100, message: 'Internal Server Error' } };
    const register = /^\/subjects\/([^/]+)\/versions$/.exec(req.url ?? '');
    if (req.method === 'POST' && register) {
      if (this.incompatibleSubjects.has(decodeURIComponent(register[1]!))) {
        return { status: 409, body: { error_code: 409, message: 'Schema being registered is incompatible with an earlier schema for subject' } };
      }
      const { schema } = JSON.parse(text) as { schema: string };
      JSON.parse(schema); // a real registry refuses what is not a schema
      let id = this.ids.get(schema);
      if (id === undefined) {
        id = this.schemas.push(schema);
        this.ids.set(schema, id);
      }
      return { status: 200, body: { id } };
    }
    const byId = /^\/schemas\/ids\/(\d+)$/.exec(req.url ?? '');
    if (req.method === 'GET' && byId) {
      const schema = this.schemas[Number(byId[1]) - 1];
      return schema === undefined ? { status: 404, body: { error_code: 40403, message: 'Schema not found' } } : { status: 200, body: { schema } };
    }
    return { status: 404, body: { error_code: 404, message: 'HTTP 404 Not Found' } };
  }
}

async function serdeError(fn: () => Promise<unknown>): Promise<SerdeError> {
  const err = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SerdeError);
  return err as SerdeError;
}

describe('Confluent schema registry serde', () => {
  const registry = new FakeRegistry();
  const open: RecordSerde[] = [];
  const serdeFor = (options: Partial<RegistryOptions> = {}, schemas?: ReturnType<typeof schemasWithConversationField>) => {
    const serde = createSerde({ registry: { url: registry.url, ...options }, schemas });
    open.push(serde);
    return serde;
  };

  beforeAll(() => registry.start());
  afterAll(() => registry.stop());
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    registry.requests.length = 0;
    registry.failWith = undefined;
    registry.hang = false;
    registry.credentials = undefined;
  });

  it.each(SCHEMA_NAMES)('round-trips a realistic %s in the Confluent wire format', async (schema) => {
    const encoded = await serdeFor().encode(schema, EXAMPLES[schema], 'magpie.test');
    expect(encoded.value[0]).toBe(0);
    const id = encoded.value.readInt32BE(1);
    expect(registry.requests).toContain('POST /subjects/magpie.test-value/versions');
    expect(await serdeFor().decode(schema, encoded.value, {})).toEqual(EXAMPLES[schema]);
    expect(registry.requests).toContain(`GET /schemas/ids/${id}`);
  });

  it('registers once per subject and fetches each id once', async () => {
    const writer = serdeFor();
    const reader = serdeFor();
    for (let i = 0; i < 3; i++) {
      const a = await writer.encode('magpie.Instruction', { ...instruction, uuid: `a${i}` }, 'topic-a');
      const b = await writer.encode('magpie.Instruction', { ...instruction, uuid: `b${i}` }, 'topic-b');
      await reader.decode('magpie.Instruction', a.value, {});
      await reader.decode('magpie.Instruction', b.value, {});
    }
    expect(registry.requests.filter((r) => r.startsWith('POST'))).toEqual(['POST /subjects/topic-a-value/versions', 'POST /subjects/topic-b-value/versions']);
    expect(registry.requests.filter((r) => r.startsWith('GET'))).toHaveLength(1);
  });

  it('resolves an evolved writer schema fetched by id', async () => {
    const writer = serdeFor({}, schemasWithConversationField(NEW_TAG_FIELD));
    const encoded = await writer.encode('magpie.Conversation', { ...conversation, new_tag: 'v2' }, 'magpie.responses');
    expect(await serdeFor().decode('magpie.Conversation', encoded.value, {})).toEqual(conversation);
    const old = await serdeFor().encode('magpie.Conversation', conversation, 'magpie.responses');
    expect(await writer.decode('magpie.Conversation', old.value, {})).toEqual({ ...conversation, new_tag: null });
  });

  it('sends basic auth and keeps the password out of errors', async () => {
    registry.credentials = 'magpie:s3cret-pass';
    await serdeFor({ username: 'magpie', password: 's3cret-pass' }).encode('magpie.Rejected', EXAMPLES['magpie.Rejected'], 't');
    const err = await serdeError(() => serdeFor({ username: 'magpie', password: 'wrong-pass' }).encode('magpie.Rejected', EXAMPLES['magpie.Rejected'], 't'));
    expect(err.code).toBe('SERDE_REGISTRY');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('HTTP 401');
    expect(err.message).toContain('username and password');
    expect(err.message).not.toContain('wrong-pass');
  });

  it('takes credentials from the URL without ever printing them', async () => {
    registry.credentials = 'magpie:url-pass';
    const url = registry.url.replace('http://', 'http://magpie:url-pass@');
    const serde = createSerde({ registry: { url } });
    open.push(serde);
    await serde.encode('magpie.Rejected', EXAMPLES['magpie.Rejected'], 't');
    registry.failWith = 500;
    const err = await serdeError(() => serde.encode('magpie.Rejected', EXAMPLES['magpie.Rejected'], 'other'));
    expect(err.message).not.toContain('url-pass');
  });

  it('reads the registry from a topology serde block, secrets from the environment', async () => {
    registry.credentials = 'env-user:env-pass';
    process.env.TEST_REGISTRY_USER = 'env-user';
    process.env.TEST_REGISTRY_PASSWORD = 'env-pass';
    const serde = createSerde({ config: { registry: { url: registry.url, usernameEnv: 'TEST_REGISTRY_USER', passwordEnv: 'TEST_REGISTRY_PASSWORD' } } });
    open.push(serde);
    const encoded = await serde.encode('magpie.Instruction', instruction, 't');
    expect(encoded.value[0]).toBe(0);
    expect(() => createSerde({ config: { registry: { url: registry.url, passwordEnv: 'TEST_REGISTRY_UNSET' } } })).toThrow(/TEST_REGISTRY_UNSET is not set/);
  });

  it('maps a 409 to SERDE_INCOMPATIBLE', async () => {
    registry.incompatibleSubjects.add('locked-value');
    const err = await serdeError(() => serdeFor().encode('magpie.Instruction', instruction, 'locked'));
    expect(err.code).toBe('SERDE_INCOMPATIBLE');
    expect(err.message).toContain('subject locked-value');
  });

  it('makes 5xx answers, timeouts and refused connections retryable', async () => {
    registry.failWith = 503;
    let err = await serdeError(() => serdeFor().encode('magpie.Instruction', instruction, 'a'));
    expect([err.code, err.retryable]).toEqual(['SERDE_REGISTRY', true]);
    registry.failWith = undefined;

    registry.hang = true;
    err = await serdeError(() => serdeFor({ timeoutMs: 200 }).encode('magpie.Instruction', instruction, 'b'));
    expect([err.code, err.retryable]).toEqual(['SERDE_REGISTRY', true]);
    expect(err.message).toContain('did not answer');
    registry.hang = false;

    err = await serdeError(() => serdeFor({ url: 'http://127.0.0.1:1', timeoutMs: 1000 }).encode('magpie.Instruction', instruction, 'c'));
    expect([err.code, err.retryable]).toEqual(['SERDE_REGISTRY', true]);
  });

  it('needs the topic to pick the subject', async () => {
    const err = await serdeError(() => serdeFor().encode('magpie.Instruction', instruction));
    expect(err.code).toBe('SERDE_REGISTRY');
    expect(err.message).toContain('needs the topic');
  });

  it('rejects bytes that are not in the wire format with SERDE_CORRUPT', async () => {
    const serde = serdeFor();
    const encoded = await serde.encode('magpie.Instruction', instruction, 't');
    const wrongMagic = Buffer.from(encoded.value);
    wrongMagic[0] = 0x7b;
    let err = await serdeError(() => serde.decode('magpie.Instruction', wrongMagic, {}));
    expect(err.code).toBe('SERDE_CORRUPT');
    expect(err.message).toContain('starts with byte 0x7b');
    err = await serdeError(() => serde.decode('magpie.Instruction', Buffer.from([0, 0, 1]), {}));
    expect(err.code).toBe('SERDE_CORRUPT');
    err = await serdeError(() => serde.decode('magpie.Instruction', encoded.value.subarray(0, encoded.value.length - 2), {}));
    expect(err.code).toBe('SERDE_CORRUPT');
    expect(err.message).toContain('truncated');
  });

  it('reports an id the registry does not know as SERDE_UNKNOWN_SCHEMA', async () => {
    const bytes = Buffer.from([0, 0, 0, 0x30, 0x39, 2, 0]);
    const err = await serdeError(() => serdeFor().decode('magpie.Instruction', bytes, {}, { topic: 't', partition: 0, offset: '3' }));
    expect(err.code).toBe('SERDE_UNKNOWN_SCHEMA');
    expect(err.message).toContain('record at t[0]@3 names schema id 12345');
  });
});
