import { describe, expect, it, vi } from 'vitest';
import { SerdeError } from '../../../src/core/errors.js';
import { defaultSchemaSet, fingerprintOf, schemaJsonOf } from '../../../src/serde/avro.js';
import { InMemorySchemaStore } from '../../../src/serde/schema-store.js';
import { createSerde, FINGERPRINT_HEADER, SCHEMA_HEADER, type RecordSerde } from '../../../src/serde/serde.js';
import { SCHEMA_NAMES } from '../../../src/serde/schemas.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { conversation, EXAMPLES, instruction, NEW_TAG_FIELD, schemasWithConversationField } from './fixtures.js';

/** Runs `fn` and returns the SerdeError it rejects with. */
async function serdeError(fn: () => Promise<unknown>): Promise<SerdeError> {
  const err = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SerdeError);
  return err as SerdeError;
}

describe('embedded serde', () => {
  it.each(SCHEMA_NAMES)('round-trips a realistic %s', async (schema) => {
    const serde = createSerde();
    const encoded = await serde.encode(schema, EXAMPLES[schema]);
    expect(encoded.headers).toEqual({ [SCHEMA_HEADER]: schema, [FINGERPRINT_HEADER]: defaultSchemaSet().fingerprint(schema) });
    expect(await serde.decode(schema, encoded.value, encoded.headers)).toEqual(EXAMPLES[schema]);
  });

  it('fills defaulted fields the producer left out', async () => {
    const serde = createSerde();
    const { instruction_tokens: _omitted, ...partial } = instruction;
    const encoded = await serde.encode('magpie.Instruction', { ...partial, gen_input_configs: { ...partial.gen_input_configs, seed: undefined, system_prompt: undefined } });
    expect(await serde.decode('magpie.Instruction', encoded.value, encoded.headers)).toEqual({
      ...instruction,
      instruction_tokens: 0,
      gen_input_configs: { ...instruction.gen_input_configs, seed: null, system_prompt: null },
    });
  });

  it('reads headers given as Buffers, as kafkajs delivers them', async () => {
    const serde = createSerde();
    const encoded = await serde.encode('magpie.Rejected', EXAMPLES['magpie.Rejected']);
    const headers = Object.fromEntries(Object.entries(encoded.headers).map(([k, v]) => [k, Buffer.from(v)]));
    expect(await serde.decode('magpie.Rejected', encoded.value, headers)).toEqual(EXAMPLES['magpie.Rejected']);
  });

  describe('schema evolution', () => {
    const evolved = schemasWithConversationField(NEW_TAG_FIELD);

    it('reads a record from a newer writer that added an optional field', async () => {
      const store = new InMemorySchemaStore();
      const writer = createSerde({ schemas: evolved, schemaStore: store });
      const reader = createSerde({ schemaStore: store });
      const encoded = await writer.encode('magpie.Conversation', { ...conversation, new_tag: 'tagged by v2' });
      expect(encoded.headers[FINGERPRINT_HEADER]).toBe(evolved.fingerprint('magpie.Conversation'));
      expect(encoded.headers[FINGERPRINT_HEADER]).not.toBe(defaultSchemaSet().fingerprint('magpie.Conversation'));

      const decoded = await reader.decode<Conversation>('magpie.Conversation', encoded.value, encoded.headers);
      expect(decoded).toEqual(conversation);
      expect(decoded).not.toHaveProperty('new_tag');
    });

    it('gives a newer reader the default for a field an older writer did not have', async () => {
      const store = new InMemorySchemaStore();
      const writer = createSerde({ schemaStore: store });
      const reader = createSerde({ schemas: evolved, schemaStore: store });
      const encoded = await writer.encode('magpie.Conversation', conversation);
      expect(await reader.decode('magpie.Conversation', encoded.value, encoded.headers)).toEqual({ ...conversation, new_tag: null });
    });

    it('rejects a writer the reader cannot resolve with SERDE_INCOMPATIBLE', async () => {
      const store = new InMemorySchemaStore();
      const writer = createSerde({ schemaStore: store });
      const strictReader = createSerde({ schemas: schemasWithConversationField({ name: 'required_tag', type: 'string' }), schemaStore: store });
      const encoded = await writer.encode('magpie.Conversation', conversation);
      const source = { topic: 'magpie.responses', partition: 1, offset: '42' };
      const err = await serdeError(() => strictReader.decode('magpie.Conversation', encoded.value, encoded.headers, source));
      expect(err.code).toBe('SERDE_INCOMPATIBLE');
      expect(err.message).toContain('record at magpie.responses[1]@42');
      expect(err.message).toContain('add fields with defaults');
    });

    it('rejects a record of another schema with SERDE_INCOMPATIBLE', async () => {
      const serde = createSerde();
      const encoded = await serde.encode('magpie.Instruction', instruction);
      const err = await serdeError(() => serde.decode('magpie.Conversation', encoded.value, encoded.headers));
      expect(err.code).toBe('SERDE_INCOMPATIBLE');
      expect(err.message).toContain('magpie.Instruction');
    });
  });

  describe('schema store', () => {
    it('publishes each writer schema once, before the first record is returned', async () => {
      const store = new InMemorySchemaStore();
      let release!: () => void;
      const put = vi.spyOn(store, 'put').mockImplementation(() => new Promise<void>((resolve) => (release = resolve)));
      const serde = createSerde({ schemaStore: store });

      let done = 0;
      const encodes = [1, 2, 3].map(() => serde.encode('magpie.Instruction', instruction).then(() => done++));
      await new Promise((r) => setTimeout(r, 10));
      expect(done).toBe(0);
      expect(put).toHaveBeenCalledTimes(1);
      const type = defaultSchemaSet().getType('magpie.Instruction');
      expect(put).toHaveBeenCalledWith(fingerprintOf(type), schemaJsonOf(type));

      release();
      await Promise.all(encodes);
      await serde.encode('magpie.Instruction', instruction);
      expect(put).toHaveBeenCalledTimes(1);
    });

    it('holds records back with a retryable SERDE_REGISTRY while the store fails, then publishes again', async () => {
      const store = new InMemorySchemaStore();
      const put = vi.spyOn(store, 'put').mockRejectedValueOnce(new Error('broker down'));
      const serde = createSerde({ schemaStore: store });
      const err = await serdeError(() => serde.encode('magpie.Instruction', instruction));
      expect(err.code).toBe('SERDE_REGISTRY');
      expect(err.retryable).toBe(true);
      expect(err.message).toContain('broker down');
      await serde.encode('magpie.Instruction', instruction);
      expect(put).toHaveBeenCalledTimes(2);
    });

    it('looks an unknown fingerprint up once and caches the writer schema', async () => {
      const store = new InMemorySchemaStore();
      const writer = createSerde({ schemas: schemasWithConversationField(NEW_TAG_FIELD), schemaStore: store });
      const reader = createSerde({ schemaStore: store });
      const get = vi.spyOn(store, 'get');
      for (let i = 0; i < 3; i++) {
        const encoded = await writer.encode('magpie.Conversation', { ...conversation, uuid: `u${i}` });
        await reader.decode('magpie.Conversation', encoded.value, encoded.headers);
      }
      expect(get).toHaveBeenCalledTimes(1);
    });

    it('refuses a store entry whose schema does not match its fingerprint', async () => {
      const store = new InMemorySchemaStore();
      const fp = 'ab'.repeat(32);
      await store.put(fp, schemaJsonOf(defaultSchemaSet().getType('magpie.Rejected')));
      const serde = createSerde({ schemaStore: store });
      const err = await serdeError(() => serde.decode('magpie.Rejected', Buffer.alloc(10), { [FINGERPRINT_HEADER]: fp }));
      expect(err.code).toBe('SERDE_REGISTRY');
      expect(err.message).toContain('foreign data');
    });
  });

  describe('records it cannot read', () => {
    const serde: RecordSerde = createSerde();

    it('says what to do when the fingerprint header is missing', async () => {
      const encoded = await serde.encode('magpie.Instruction', instruction);
      const err = await serdeError(() => serde.decode('magpie.Instruction', encoded.value, {}, { topic: 'magpie.instructions', partition: 0, offset: '7' }));
      expect(err.code).toBe('SERDE_UNKNOWN_SCHEMA');
      expect(err.message).toMatch(/record at magpie\.instructions\[0\]@7 has no magpie-schema-fp header: was it produced by magpie\? Use `magpie produce`/);
    });

    it('reports SERDE_UNKNOWN_SCHEMA for a fingerprint no store holds', async () => {
      const encoded = await serde.encode('magpie.Instruction', instruction);
      const err = await serdeError(() => serde.decode('magpie.Instruction', encoded.value, { ...encoded.headers, [FINGERPRINT_HEADER]: 'cd'.repeat(32) }));
      expect(err.code).toBe('SERDE_UNKNOWN_SCHEMA');
      expect(err.message).toContain('not in the schema store');
    });

    it.each([
      ['truncated', (b: Buffer) => b.subarray(0, b.length - 5), /truncated/],
      ['cut to one byte', (b: Buffer) => b.subarray(0, 1), /truncated/],
      ['followed by extra bytes', (b: Buffer) => Buffer.concat([b, Buffer.from([1, 2, 3])]), /3 trailing bytes/],
      ['random', () => Buffer.from('9c4f02e7d1a65b3380ffee1274c9a0d6b13e58f7', 'hex'), /does not decode/],
      ['empty', () => Buffer.alloc(0), /truncated/],
    ])('reports SERDE_CORRUPT for bytes that are %s', async (_name, damage, detail) => {
      const encoded = await serde.encode('magpie.Conversation', conversation);
      const err = await serdeError(() => serde.decode('magpie.Conversation', damage(encoded.value), encoded.headers));
      expect(err.code).toBe('SERDE_CORRUPT');
      expect(err.message).toMatch(detail);
      expect(err.message).toContain('does not decode as magpie.Conversation');
    });

    it('reports SERDE_CORRUPT for damaged bytes from an older writer too (resolver path)', async () => {
      const store = new InMemorySchemaStore();
      const writer = createSerde({ schemas: schemasWithConversationField(NEW_TAG_FIELD), schemaStore: store });
      const reader = createSerde({ schemaStore: store });
      const encoded = await writer.encode('magpie.Conversation', conversation);
      const err = await serdeError(() => reader.decode('magpie.Conversation', encoded.value.subarray(0, 30), encoded.headers));
      expect(err.code).toBe('SERDE_CORRUPT');
    });

    it('reports SERDE_CORRUPT for a tombstone', async () => {
      const err = await serdeError(() => serde.decode('magpie.Instruction', null, {}));
      expect(err.code).toBe('SERDE_CORRUPT');
      expect(err.message).toContain('tombstone');
    });
  });

  describe('invalid values', () => {
    const serde = createSerde();

    it('names every bad field path with SERDE_INVALID_VALUE', async () => {
      const bad = {
        ...conversation,
        gen_input_configs: { ...conversation.gen_input_configs, temperature: 'hot' },
        conversations: [conversation.conversations[0], { from: 'assistant', value: 'hi' }],
        embedding: [0.5, 'x'],
      };
      const err = await serdeError(() => serde.encode('magpie.Conversation', bad));
      expect(err.code).toBe('SERDE_INVALID_VALUE');
      expect(err.details?.fields).toEqual(['gen_input_configs.temperature', 'conversations[1].from', 'embedding[1]']);
      expect(err.message).toContain('gen_input_configs.temperature: expected double, got "hot"');
      expect(err.message).toContain('conversations[1].from: expected magpie.Speaker, got "assistant"');
    });

    it('says a required field is missing', async () => {
      const { uuid: _missing, ...noUuid } = instruction;
      const err = await serdeError(() => serde.encode('magpie.Instruction', noUuid));
      expect(err.code).toBe('SERDE_INVALID_VALUE');
      expect(err.message).toContain('uuid: expected string, got nothing (field missing)');
    });

    it('rejects a value that is not a record at all', async () => {
      const err = await serdeError(() => serde.encode('magpie.Rejected', 'not a record'));
      expect(err.code).toBe('SERDE_INVALID_VALUE');
      expect(err.message).toContain('(the value itself): expected magpie.Rejected');
    });

    it('does not publish or encode anything for an invalid value', async () => {
      const store = new InMemorySchemaStore();
      const put = vi.spyOn(store, 'put');
      await expect(createSerde({ schemaStore: store }).encode('magpie.Instruction', {})).rejects.toThrow(SerdeError);
      expect(put).not.toHaveBeenCalled();
    });
  });
});
