import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { DEFAULT_SCHEMA_DIR, createSchemaSet, defaultSchemaSet, getType, loadSchemaSet, parseWriterSchema, schemaJsonOf } from '../../../src/serde/avro.js';
import { SCHEMA_NAMES } from '../../../src/serde/schemas.js';
import { NEW_TAG_FIELD, schemaJsons, schemasWithConversationField } from './fixtures.js';

describe('schema loading', () => {
  it('loads every schema of schemas/, definitions before their uses', () => {
    const names = defaultSchemaSet().types.map((t) => t.name);
    expect([...names].sort()).toEqual([...SCHEMA_NAMES].sort());
    expect(names.indexOf('magpie.Instruction')).toBeLessThan(names.indexOf('magpie.Conversation'));
    expect(getType('magpie.Conversation').name).toBe('magpie.Conversation');
  });

  it('orders schemas given in any order', () => {
    const reversed = schemaJsons().reverse();
    expect(createSchemaSet(reversed).fingerprint('magpie.Conversation')).toBe(defaultSchemaSet().fingerprint('magpie.Conversation'));
  });

  it('loads from another directory and names the file that uses an undefined type', () => {
    const dir = mkdtempSync(join(tmpdir(), 'magpie-schemas-'));
    writeFileSync(join(dir, 'conversation.avsc'), readFileSync(join(DEFAULT_SCHEMA_DIR, 'conversation.avsc')));
    expect(() => loadSchemaSet(dir)).toThrow(ConfigError);
    expect(() => loadSchemaSet(dir)).toThrow(/conversation\.avsc: uses type magpie\.GenInputConfigs, which no schema defines/);
    for (const file of readdirSync(DEFAULT_SCHEMA_DIR).filter((f) => f.endsWith('.avsc'))) writeFileSync(join(dir, file), readFileSync(join(DEFAULT_SCHEMA_DIR, file)));
    expect(loadSchemaSet(dir).fingerprint('magpie.Conversation')).toBe(defaultSchemaSet().fingerprint('magpie.Conversation'));
  });

  it('names the file of an invalid schema', () => {
    const dir = mkdtempSync(join(tmpdir(), 'magpie-schemas-'));
    writeFileSync(join(dir, 'broken.avsc'), JSON.stringify({ type: 'record', name: 'Broken', fields: [{ name: 'x', type: 'strin' }] }));
    expect(() => loadSchemaSet(dir)).toThrow(/broken\.avsc: uses type strin/);
  });
});

describe('fingerprints', () => {
  it('are the hex SHA-256 of the canonical form', () => {
    const type = getType('magpie.Instruction');
    expect(defaultSchemaSet().fingerprint('magpie.Instruction')).toMatch(/^[0-9a-f]{64}$/);
    expect(defaultSchemaSet().fingerprint('magpie.Instruction')).toBe(type.fingerprint('sha256').toString('hex'));
  });

  it('change with the binary layout, not with docs', () => {
    const jsons = schemaJsons();
    (jsons.find((s) => s.name === 'Conversation') as { doc?: string }).doc = 'reworded';
    expect(createSchemaSet(jsons).fingerprint('magpie.Conversation')).toBe(defaultSchemaSet().fingerprint('magpie.Conversation'));
    expect(schemasWithConversationField(NEW_TAG_FIELD).fingerprint('magpie.Conversation')).not.toBe(defaultSchemaSet().fingerprint('magpie.Conversation'));
  });

  it('survive publishing: the exported schema is self-contained and keeps defaults and logical types', () => {
    const json = schemaJsonOf(getType('magpie.Conversation'));
    expect(json).toContain('"logicalType":"timestamp-millis"');
    expect(json).toContain('"name":"magpie.GenInputConfigs"');
    expect(json).toContain('"default":"stop"');
    expect(parseWriterSchema(json).fingerprint('sha256')).toEqual(getType('magpie.Conversation').fingerprint('sha256'));
  });
});
